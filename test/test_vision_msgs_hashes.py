"""Our vision_msgs definitions must hash exactly like upstream 4.1.1, or real peers won't match."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

MSG_DIR = REPO / "fallback_interfaces" / "vision_msgs" / "msg"

# RIHS01 hashes of the upstream vision_msgs 4.1.1 interfaces (facts from the ROS interface notes).
GOLDEN = {
    "BoundingBox2D": "008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f",
    "BoundingBox2DArray": "2464e82838009386d371b523211c21c91d74d313fcdd6788223c531d621cf691",
    "BoundingBox3D": "bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698",
    "BoundingBox3DArray": "a81938db9576b10c2eecd7c5a5da3eac496efd00221b25ed051dfbc81fb56da6",
    "Classification": "f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143",
    "Detection2D": "0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea",
    "Detection2DArray": "214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968",
    "Detection3D": "ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
    "Detection3DArray": "793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
    "LabelInfo": "3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783",
    "ObjectHypothesis": "51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "ObjectHypothesisWithPose": "41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "Point2D": "eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247",
    "Pose2D": "b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648",
    "VisionClass": "1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a",
    "VisionInfo": "95d3116a17484ad91c9a2686e1d54890bbfc3ff6c6a2de137738c4950d45d284",
}


def _share_dir(package: str) -> Path:
    """The installed share directory of a ROS package (ament index, else the venv's share/)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(package))
    except (LookupError, OSError, ValueError):
        return Path(sys.prefix) / "share" / package


def _hashes_in(json_dir: Path) -> dict[str, str]:
    found = {}
    for path in sorted(json_dir.glob("*.json")):
        own = json.loads(path.read_text())["type_hashes"][0]
        found[own["type_name"].rsplit("/", 1)[1]] = own["hash_string"].removeprefix("RIHS01_")
    return found


def test_all_sixteen_messages_are_defined() -> None:
    assert sorted(p.stem for p in MSG_DIR.glob("*.msg")) == sorted(GOLDEN)


def test_rosidl_hash_of_our_definitions_matches_upstream(tmp_path: Path) -> None:
    rosidl = shutil.which("rosidl") or str(Path(sys.executable).parent / "rosidl")
    if not Path(rosidl).exists():
        pytest.skip("rosidl (ros-rosidl-cli) is not installed")
    includes = []
    for dep in ("std_msgs", "geometry_msgs", "builtin_interfaces"):
        includes += ["-I", str(_share_dir(dep))]
    env = dict(os.environ, AMENT_PREFIX_PATH=os.environ.get("AMENT_PREFIX_PATH", sys.prefix))
    subprocess.run(
        [rosidl, "hash", "-o", str(tmp_path), *includes, "vision_msgs",
         *[f"msg/{name}.msg" for name in sorted(GOLDEN)]],
        cwd=MSG_DIR.parent, env=env, check=True, capture_output=True,
    )
    assert _hashes_in(tmp_path / "msg") == GOLDEN


def test_installed_vision_msgs_hashes_match_upstream() -> None:
    installed = _share_dir("vision_msgs") / "msg"
    if not installed.is_dir():
        pytest.fail(f"vision_msgs is not installed ({installed} missing): run scripts/setup_env.sh")
    assert _hashes_in(installed) == GOLDEN
