"""crossi2p_ros: online camera-LiDAR extrinsic calibration (CrossI2P) for ROS 2.

Everything outside ``crossi2p_ros.ros`` imports without rclpy.
"""

__version__ = "0.1.0"
