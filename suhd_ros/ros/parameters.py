"""Parameter descriptors with their ranges, shared by the package's nodes.

A range in the descriptor makes rclpy refuse an out-of-range value with the reason, and shows
the range to `ros2 param describe`.
"""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def descriptor(description: str, *, read_only: bool = False,
               floats: tuple[float, float] | None = None,
               ints: tuple[int, int] | None = None) -> ParameterDescriptor:
    """A descriptor with a float range (any value between) or an integer range (step 1)."""
    result = ParameterDescriptor(description=description, read_only=read_only)
    if floats is not None:
        result.floating_point_range = [
            FloatingPointRange(from_value=floats[0], to_value=floats[1], step=0.0)]
    if ints is not None:
        result.integer_range = [IntegerRange(from_value=ints[0], to_value=ints[1], step=1)]
    return result
