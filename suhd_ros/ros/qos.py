"""QoS profiles built from node parameters, so launch files can match any camera driver.

Defaults equal rclpy's sensor data profile (best effort, volatile, keep last 5): a detector
wants the newest frame, not a queue of stale ones, and a best-effort subscriber also accepts
reliable publishers.
"""

from __future__ import annotations

from typing import TypeVar

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY_POLICIES: dict[str, ReliabilityPolicy] = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
    "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
}
DURABILITY_POLICIES: dict[str, DurabilityPolicy] = {
    "volatile": DurabilityPolicy.VOLATILE,
    "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
    "system_default": DurabilityPolicy.SYSTEM_DEFAULT,
}
DEFAULT_RELIABILITY = "best_effort"
DEFAULT_DURABILITY = "volatile"
DEFAULT_HISTORY_DEPTH = 5

Policy = TypeVar("Policy", ReliabilityPolicy, DurabilityPolicy)


def _policy(kind: str, value: str, policies: dict[str, Policy]) -> Policy:
    """The policy a parameter string names (case and surrounding spaces ignored)."""
    policy = policies.get(value.strip().lower()) if isinstance(value, str) else None
    if policy is None:
        raise ValueError(f"{kind} must be one of {', '.join(policies)}, found {value!r}")
    return policy


def qos_from_parameters(
    reliability: str = DEFAULT_RELIABILITY,
    durability: str = DEFAULT_DURABILITY,
    history_depth: int = DEFAULT_HISTORY_DEPTH,
) -> QoSProfile:
    """A keep-last QoS profile from parameter values; ValueError says which value is wrong.

    ``history_depth`` must be at least 1: rclpy would read a keep-last depth of 0 as the
    system default, which is not what a user who wrote 0 meant.
    """
    if isinstance(history_depth, bool) or not isinstance(history_depth, int):
        raise ValueError(f"history_depth must be an integer, found {history_depth!r}")
    if history_depth < 1:
        raise ValueError(f"history_depth must be at least 1, found {history_depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=history_depth,
        reliability=_policy("reliability", reliability, RELIABILITY_POLICIES),
        durability=_policy("durability", durability, DURABILITY_POLICIES),
    )
