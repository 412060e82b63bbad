"""QoS profiles from parameter values: sensor-data defaults, every policy, clear refusals."""

from __future__ import annotations

import pytest
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from suhd_ros.ros.qos import qos_from_parameters


def test_defaults_equal_the_sensor_data_profile() -> None:
    assert qos_from_parameters() == qos_profile_sensor_data
    assert qos_from_parameters("best_effort", "volatile", 5) == qos_profile_sensor_data


@pytest.mark.parametrize(
    ("reliability", "durability", "depth", "expected"),
    [
        (
            "reliable",
            "transient_local",
            1,
            QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=1,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL,
            ),
        ),
        (
            " Best_Effort ",
            "SYSTEM_DEFAULT",
            30,
            QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=30,
                reliability=ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.SYSTEM_DEFAULT,
            ),
        ),
        (
            "system_default",
            "volatile",
            10,
            QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=10,
                reliability=ReliabilityPolicy.SYSTEM_DEFAULT,
                durability=DurabilityPolicy.VOLATILE,
            ),
        ),
    ],
)
def test_parameters_map_onto_policies(
    reliability: str, durability: str, depth: int, expected: QoSProfile
) -> None:
    assert qos_from_parameters(reliability, durability, depth) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("fast", "volatile", 5), "reliability must be one of best_effort, reliable"),
        (("reliable", "persistent", 5), "durability must be one of volatile, transient_local"),
        ((None, "volatile", 5), "reliability must be one of"),
        (("reliable", "volatile", 0), "at least 1, found 0"),
        (("reliable", "volatile", -3), "at least 1, found -3"),
        (("reliable", "volatile", 2.5), "must be an integer"),
        (("reliable", "volatile", True), "must be an integer"),
    ],
)
def test_invalid_parameters_are_refused_with_the_reason(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qos_from_parameters(*arguments)
