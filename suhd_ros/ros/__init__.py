"""The ROS 2 glue: the nodes, message conversions, QoS, image encodings, overlay, Fast DDS.

Everything ROS-specific of the package lives here; the core below (snn, yolo, detector, ...)
never imports from it.
"""
