"""Turning network outputs into a camera-LiDAR pose: coarse matches -> robust PnP -> refinement."""
