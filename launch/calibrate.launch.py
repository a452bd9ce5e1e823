"""Launch the crossi2p calibration node.

    ros2 launch crossi2p_ros calibrate.launch.py [config:=<file>] [namespace:=] [mode:=calibrate|monitor]
        [device:=auto|cpu|cuda] [use_sim_time:=true|false] [cameras:="[front, left]"]
        [image_topic:=/{camera}/image_raw] [camera_info_topic:=/{camera}/camera_info] [cloud_topic:=/lidar/points]
        [initial_calibration:=<file>] [installed_calibration:=<file>] [output_dir:=<folder>]

Parameters come from ``config`` (default: the package's config/calibration.yaml);
an argument given on the command line overrides that parameter, one left out
keeps the file's value (so a user's ``config:=`` file is never silently undone).
Several cameras on one LiDAR, one node: ``cameras:="[front, left]"`` calibrates
``/front/image_raw`` and ``/left/image_raw`` (each ``{camera}`` in a topic or file
is the camera's name) and publishes ``~/front/calibration`` and ``~/left/calibration``.
"""
import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# argument -> (help, whether its text is YAML: a list or a boolean; the others are taken as written, so that a
# topic such as {camera}/image_raw is not read as a YAML mapping)
OVERRIDES = {
    "mode": ("calibrate or monitor", False),
    "device": ("auto, cpu, cuda or cuda:N", False),
    "use_sim_time": ("follow /clock (bag replay): true or false", True),
    "cameras": ("names of the cameras calibrated against the LiDAR, a YAML list such as [front, left]", True),
    "image_topic": ("camera image topic ({camera}: each camera's name)", False),
    "camera_info_topic": ("CameraInfo topic ({camera}: each camera's name)", False),
    "cloud_topic": ("PointCloud2 topic", False),
    "initial_calibration": ("calibrate mode: the prior file ({camera}: each camera's name)", False),
    "installed_calibration": ("monitor mode: the installed extrinsic file ({camera}: each camera's name)", False),
    "output_dir": ("where ~/save writes the calibration files", False),
}


def _node(context, *args, **kwargs):
    overrides = {}
    for name, (_, is_yaml) in OVERRIDES.items():
        text = LaunchConfiguration(name).perform(context)
        if text != "":
            overrides[name] = yaml.safe_load(text) if is_yaml else text
    return [Node(
        package="crossi2p_ros",
        executable="calibration_node",
        name="crossi2p_calibration",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("config"), overrides],
    )]


def generate_launch_description() -> LaunchDescription:
    default_config = PathJoinSubstitution([FindPackageShare("crossi2p_ros"), "config", "calibration.yaml"])
    args = [
        DeclareLaunchArgument("config", default_value=default_config, description="node parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
    ] + [DeclareLaunchArgument(name, default_value="", description=f"{text} (empty: the config file's)")
         for name, (text, _) in OVERRIDES.items()]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
