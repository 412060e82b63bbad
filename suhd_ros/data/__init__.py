"""Procedural detection benchmark, COCO export and evaluation. No ROS imports."""
