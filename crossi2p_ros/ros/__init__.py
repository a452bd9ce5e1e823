"""The only part of crossi2p_ros that imports rclpy: the calibration node, the bag player, message conversion."""
