"""Launch the crossi2p calibration node.

    ros2 launch crossi2p_ros calibrate.launch.py [mode:=calibrate|monitor] [device:=auto|cpu|cuda]
        [use_sim_time:=false] [namespace:=] [config:=<file>] [cameras:="[camera]"]
        [image_topic:=/{camera}/image_raw] [camera_info_topic:=/{camera}/camera_info] [cloud_topic:=/lidar/points]

Parameters come from ``config`` (default: the package's config/calibration.yaml);
the arguments above override them (the topic arguments set the node's input topics).
Several cameras on one LiDAR, one node: ``cameras:="[front, left]"`` calibrates
``/front/image_raw`` and ``/left/image_raw`` (each ``{camera}`` in a topic is the
camera's name) and publishes ``~/front/calibration`` and ``~/left/calibration``.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    default_config = PathJoinSubstitution([FindPackageShare("crossi2p_ros"), "config", "calibration.yaml"])
    args = [
        DeclareLaunchArgument("config", default_value=default_config, description="node parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("mode", default_value="calibrate", description="calibrate or monitor"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        DeclareLaunchArgument("cameras", default_value="[camera]",
                              description="names of the cameras calibrated against the LiDAR (a YAML list)"),
        DeclareLaunchArgument("image_topic", default_value="/{camera}/image_raw",
                              description="camera image topic ({camera}: each camera's name)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/{camera}/camera_info",
                              description="CameraInfo topic ({camera}: each camera's name)"),
        DeclareLaunchArgument("cloud_topic", default_value="/lidar/points", description="PointCloud2 topic"),
    ]
    node = Node(
        package="crossi2p_ros",
        executable="calibration_node",
        name="crossi2p_calibration",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {
                "mode": LaunchConfiguration("mode"),
                "device": LaunchConfiguration("device"),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                "cameras": LaunchConfiguration("cameras"),
                "image_topic": LaunchConfiguration("image_topic"),
                "camera_info_topic": LaunchConfiguration("camera_info_topic"),
                "cloud_topic": LaunchConfiguration("cloud_topic"),
            },
        ],
    )
    return LaunchDescription(args + [node])
