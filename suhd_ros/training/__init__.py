"""Training a ReLU YOLOv5: samples (dataset.py), augmentation, loss, the loop. No ROS imports."""
