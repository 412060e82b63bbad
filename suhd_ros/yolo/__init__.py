"""YOLOv5 in plain PyTorch: model, model files, letterbox, post-processing. No ROS imports."""
