"""Spiking core: STDI neurons, spiking layers, engines, energy accounting. No ROS imports."""
