"""Our decoder against cv_bridge, on a real ROS 2 install where cv_bridge is importable.

cv_bridge is not on PyPI in a usable form (the `cv-bridge` package there is an old ROS 1 build),
so on machines without a ROS install this module is skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from suhd_ros.ros.image_encoding import SUPPORTED_ENCODINGS, decode_image, encode_image
from suhd_ros.synthetic.scenes import generate_scene

cv_bridge = pytest.importorskip("cv_bridge")

# 16-bit to 8-bit: cv_bridge scales by 255/65535, we shift by 8; YUV: rounding differs by one
TOLERANCE = {"mono16": 1, "16UC1": 1, "yuv422": 1, "yuv422_yuy2": 1}


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
def test_decode_matches_cv_bridge(encoding: str) -> None:
    rgb = generate_scene(7, 64, 48).image
    height, width, enc, step, data = encode_image(rgb, encoding)
    msg = Image(height=height, width=width, encoding=enc, step=step, data=data)
    try:
        expected = cv_bridge.CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except cv_bridge.CvBridgeError:
        pytest.skip(f"cv_bridge cannot convert {encoding} to rgb8")
    ours = decode_image(height, width, enc, step, data)
    assert ours.shape == expected.shape
    diff = np.abs(ours.astype(np.int16) - np.asarray(expected, dtype=np.int16))
    assert diff.max() <= TOLERANCE.get(encoding, 0), encoding
