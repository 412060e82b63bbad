"""RGB images -> the network's input batch: the one path inference, calibration and training use.

A second copy of this (another pad value, another rounding, BGR for RGB) would make calibration
see other activations than inference does, and the thresholds would silently stop fitting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from suhd_ros.yolo.letterbox import LetterboxInfo, letterbox


def network_input(images: Sequence[np.ndarray], input_size: int | Sequence[int],
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                  ) -> tuple[torch.Tensor, list[LetterboxInfo]]:
    """Letterbox each HxWx3 uint8 RGB image to input_size (h, w) -> [N, 3, h, w] in 0..1.

    Returns the batch on `device` as `dtype`, and each image's letterbox (to map boxes back).
    Images already at input_size pass through unchanged.
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    padded, infos = zip(*(letterbox(image, size) for image in images), strict=True)
    batch = torch.from_numpy(np.stack(padded)).to(device).permute(0, 3, 1, 2)
    return batch.to(dtype).div_(255.0), list(infos)
