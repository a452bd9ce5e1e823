"""ament_python package setup: works with colcon on a ROS 2 install and with pip in a venv."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "crossi2p_ros"


def _data(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{folder}", sorted(p for p in glob(f"{folder}/{pattern}") if "." in p.rsplit("/", 1)[-1]))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        _data("launch", "*.launch.py"),
        _data("config", "*.yaml"),
        _data("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="crossi2p_ros maintainers",
    maintainer_email="maintainers@crossi2p.invalid",
    description="Online camera-LiDAR extrinsic calibration for ROS 2 (CrossI2P).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "crossi2p = crossi2p_ros.cli:main",
            "calibration_node = crossi2p_ros.ros.node:main",
        ],
    },
)
