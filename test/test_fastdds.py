"""The Fast DDS profile variable: one name per distro, the user's profile kept, empty = unset."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest

from suhd_ros.ros.fastdds import (
    FASTDDS_VARIABLE,
    FASTRTPS_VARIABLE,
    QOS_FROM_XML_VARIABLE,
    profile_environment,
    profile_path,
    profile_variable,
    use_package_profile,
)


@pytest.mark.parametrize(("distro", "variable"), [
    ("humble", FASTRTPS_VARIABLE), ("iron", FASTRTPS_VARIABLE), ("Jazzy", FASTRTPS_VARIABLE),
    ("kilted", FASTDDS_VARIABLE), ("rolling", FASTDDS_VARIABLE), (None, FASTDDS_VARIABLE),
])
def test_each_distro_gets_the_one_name_its_fast_dds_reads(distro: str | None,
                                                         variable: str) -> None:
    environ = {} if distro is None else {"ROS_DISTRO": distro}
    assert profile_variable(environ) == variable
    chosen = profile_environment("", environ)
    assert list(chosen) == [variable, QOS_FROM_XML_VARIABLE]
    assert Path(chosen[variable]).name == "fastdds_large_images.xml"
    assert Path(chosen[variable]).is_file()


def test_a_profile_the_user_has_set_wins_under_either_name() -> None:
    for name in (FASTDDS_VARIABLE, FASTRTPS_VARIABLE):
        env = {"ROS_DISTRO": "jazzy", name: "/etc/mine.xml"}
        assert use_package_profile(env) == "/etc/mine.xml"
        assert env[FASTRTPS_VARIABLE] == "/etc/mine.xml"
    kilted = {"ROS_DISTRO": "kilted"}
    assert use_package_profile(kilted).endswith("config/fastdds_large_images.xml")
    assert FASTRTPS_VARIABLE not in kilted  # no deprecation warning from Fast DDS 3


def test_the_other_name_is_unset_so_nodes_see_exactly_one() -> None:
    """A profile under the old name on Kilted moves to the new one (else every node warns, and
    an explicit fastdds_profile would lose to the file under the old name)."""
    kilted = {"ROS_DISTRO": "kilted", FASTRTPS_VARIABLE: "/etc/old.xml"}
    assert profile_environment("", kilted) == {FASTDDS_VARIABLE: "/etc/old.xml",
                                               FASTRTPS_VARIABLE: None}
    assert profile_environment("/opt/p.xml", kilted) == {FASTDDS_VARIABLE: "/opt/p.xml",
                                                         FASTRTPS_VARIABLE: None}
    assert use_package_profile(kilted) == "/etc/old.xml"
    assert kilted == {"ROS_DISTRO": "kilted", FASTDDS_VARIABLE: "/etc/old.xml"}
    jazzy = {"ROS_DISTRO": "jazzy", FASTDDS_VARIABLE: ""}  # empty: unset, and removed
    assert use_package_profile(jazzy).endswith("fastdds_large_images.xml")
    assert set(jazzy) == {"ROS_DISTRO", FASTRTPS_VARIABLE, QOS_FROM_XML_VARIABLE}


def test_an_empty_variable_counts_as_unset_and_a_requested_profile_wins() -> None:
    env = {FASTDDS_VARIABLE: "", FASTRTPS_VARIABLE: "  "}
    assert profile_environment("", env)[FASTDDS_VARIABLE].endswith("fastdds_large_images.xml")
    use_package_profile(env)
    assert env[FASTDDS_VARIABLE].endswith("fastdds_large_images.xml")
    assert profile_environment("/opt/p.xml", {FASTDDS_VARIABLE: "/etc/mine.xml"}) == {
        FASTDDS_VARIABLE: "/opt/p.xml"}


def test_the_package_profile_frees_samples_and_a_users_choice_is_kept() -> None:
    """Only the package's profile sets DYNAMIC history memory (test_node_memory.py shows why);
    rmw_fastrtps reads it only with RMW_FASTRTPS_USE_QOS_FROM_XML=1."""
    assert profile_environment("", {})[QOS_FROM_XML_VARIABLE] == "1"
    assert QOS_FROM_XML_VARIABLE not in profile_environment("", {FASTDDS_VARIABLE: "/m.xml"})
    assert QOS_FROM_XML_VARIABLE not in profile_environment("", {QOS_FROM_XML_VARIABLE: "0"})
    root = ElementTree.parse(profile_path()).getroot()
    policies = {element.tag.split("}")[-1]: element.findtext("{*}historyMemoryPolicy")
                for element in root.iter() if element.get("is_default_profile") == "true"}
    assert policies == {"participant": None, "data_reader": "DYNAMIC", "data_writer": "DYNAMIC"}
