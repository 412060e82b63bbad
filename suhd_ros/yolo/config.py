"""The YOLOv5 v6.0 model description, in the same shape as Ultralytics' yaml files.

Keeping the layout of the yaml (layer rows ``[from, repeats, module, args]``, the strings ``"nc"``
and ``"anchors"`` resolved by the parser) means a description pickled inside an Ultralytics
checkpoint and one made here go through the same parser, and both can be stored as JSON.
"""

import copy

# (H, W) of the network input when neither a model file nor the caller says
DEFAULT_INPUT_SIZE = (640, 640)

ANCHORS: list[list[int]] = [
    [10, 13, 16, 30, 33, 23],  # P3/8
    [30, 61, 62, 45, 59, 119],  # P4/16
    [116, 90, 156, 198, 373, 326],  # P5/32
]

# size -> (depth_multiple, width_multiple)
MULTIPLES: dict[str, tuple[float, float]] = {
    "n": (0.33, 0.25),
    "s": (0.33, 0.50),
    "m": (0.67, 0.75),
    "l": (1.0, 1.0),
    "x": (1.33, 1.25),
}

_BACKBONE: list[list] = [
    [-1, 1, "Conv", [64, 6, 2, 2]],  # 0-P1/2
    [-1, 1, "Conv", [128, 3, 2]],  # 1-P2/4
    [-1, 3, "C3", [128]],
    [-1, 1, "Conv", [256, 3, 2]],  # 3-P3/8
    [-1, 6, "C3", [256]],
    [-1, 1, "Conv", [512, 3, 2]],  # 5-P4/16
    [-1, 9, "C3", [512]],
    [-1, 1, "Conv", [1024, 3, 2]],  # 7-P5/32
    [-1, 3, "C3", [1024]],
    [-1, 1, "SPPF", [1024, 5]],  # 9
]

_HEAD: list[list] = [
    [-1, 1, "Conv", [512, 1, 1]],
    [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 6], 1, "Concat", [1]],  # cat backbone P4
    [-1, 3, "C3", [512, False]],  # 13
    [-1, 1, "Conv", [256, 1, 1]],
    [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
    [[-1, 4], 1, "Concat", [1]],  # cat backbone P3
    [-1, 3, "C3", [256, False]],  # 17 (P3/8-small)
    [-1, 1, "Conv", [256, 3, 2]],
    [[-1, 14], 1, "Concat", [1]],  # cat head P4
    [-1, 3, "C3", [512, False]],  # 20 (P4/16-medium)
    [-1, 1, "Conv", [512, 3, 2]],
    [[-1, 10], 1, "Concat", [1]],  # cat head P5
    [-1, 3, "C3", [1024, False]],  # 23 (P5/32-large)
    [[17, 20, 23], 1, "Detect", ["nc", "anchors"]],  # Detect(P3, P4, P5)
]


def yolov5_description(size: str, nc: int) -> dict:
    """The v6.0 description of YOLOv5``size`` (n, s, m, l, x) for ``nc`` classes."""
    if size not in MULTIPLES:
        raise ValueError(f"unknown YOLOv5 size {size!r}; expected one of {sorted(MULTIPLES)}")
    if nc < 1:
        raise ValueError(f"nc must be >= 1, got {nc}")
    depth_multiple, width_multiple = MULTIPLES[size]
    return {
        "nc": nc,
        "depth_multiple": depth_multiple,
        "width_multiple": width_multiple,
        "anchors": copy.deepcopy(ANCHORS),
        "backbone": copy.deepcopy(_BACKBONE),
        "head": copy.deepcopy(_HEAD),
    }
