"""suhd_ros: a spiking (SUHD) YOLOv5 object detector for ROS 2."""
