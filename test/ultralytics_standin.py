"""Stand-ins for Ultralytics YOLOv5's `models.common` / `models.yolo` classes, written from the
attribute names and yaml semantics of YOLOv5 v6.0-v7.0 and independent of suhd_ros's own model
code, so the importer is tested against checkpoints it did not make itself.

`ultralytics_checkpoint` torch.saves a dict shaped like a YOLOv5 training checkpoint while fake
`models.*` modules hold the classes (pickle records them as `models.common.Conv`, ...); nothing
of them is importable when the importer reads the file back.
"""

from __future__ import annotations

import contextlib
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

YOLOV5N = {
    "nc": 80, "depth_multiple": 0.33, "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119],
                [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]],
                 [-1, 3, "C3", [128]], [-1, 1, "Conv", [256, 3, 2]], [-1, 6, "C3", [256]],
                 [-1, 1, "Conv", [512, 3, 2]], [-1, 9, "C3", [512]],
                 [-1, 1, "Conv", [1024, 3, 2]], [-1, 3, "C3", [1024]],
                 [-1, 1, "SPPF", [1024, 5]]],
    "head": [[-1, 1, "Conv", [512, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 6], 1, "Concat", [1]], [-1, 3, "C3", [512, False]],
             [-1, 1, "Conv", [256, 1, 1]], [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
             [[-1, 4], 1, "Concat", [1]], [-1, 3, "C3", [256, False]],
             [-1, 1, "Conv", [256, 3, 2]], [[-1, 14], 1, "Concat", [1]],
             [-1, 3, "C3", [512, False]], [-1, 1, "Conv", [512, 3, 2]],
             [[-1, 10], 1, "Concat", [1]], [-1, 3, "C3", [1024, False]],
             [[17, 20, 23], 1, "Detect", ["nc", "anchors"]]],
}


class Conv(nn.Module):
    act_type: type[nn.Module] = nn.SiLU

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None,
                 g: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)  # torch's eps 1e-5; YOLOv5's initialize_weights changes it
        self.act = self.act_type()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1,
                 e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, g, e=1.0)
                                 for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [self.cv1(x)]
        for _ in range(3):
            pooled.append(self.m(pooled[-1]))
        return self.cv2(torch.cat(pooled, 1))


class Concat(nn.Module):
    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class Detect(nn.Module):
    """Raw outputs only ([N, na, ny, nx, no] per level), which is what the tests compare."""

    stride: torch.Tensor | None = None

    def __init__(self, nc: int, anchors: list, ch: list[int]) -> None:
        super().__init__()
        self.nc, self.no, self.nl = nc, nc + 5, len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.inplace = True

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for conv, xi in zip(self.m, x, strict=True):
            y = conv(xi)
            n, _, ny, nx = y.shape
            out.append(y.view(n, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return out


_BLOCKS = {"Conv": Conv, "Bottleneck": Bottleneck, "C3": C3, "SPPF": SPPF}


def _layer(row: list, yaml: dict, ch: list[int]) -> tuple[nn.Module, int]:
    f, n, name, args = row
    args = [yaml[a] if a in ("nc", "anchors") else a for a in args]
    n = max(round(n * yaml["depth_multiple"]), 1) if n > 1 else n
    if name in _BLOCKS:
        c1, c2 = ch[f], math.ceil(args[0] * yaml["width_multiple"] / 8) * 8
        args = [c1, c2, *args[1:]]
        if name == "C3":
            args.insert(2, n)
            n = 1
        make = _BLOCKS[name]
    elif name == "Concat":
        return Concat(*args), sum(ch[j] for j in f)
    elif name == "Detect":
        if isinstance(args[1], int):  # anchors: N, to be found by AutoAnchor
            args[1] = [list(range(args[1] * 2))] * len(f)
        return Detect(args[0], args[1], [ch[j] for j in f]), 0
    else:
        make, c2 = nn.Upsample, ch[f]
    layers = [make(*args) for _ in range(n)]
    return (nn.Sequential(*layers) if n > 1 else layers[0]), c2


class DetectionModel(nn.Module):
    def __init__(self, yaml: dict) -> None:
        super().__init__()
        self.yaml = yaml
        ch, layers, self.save = [3], [], []
        for i, row in enumerate(yaml["backbone"] + yaml["head"]):
            layer, c2 = _layer(row, yaml, ch)
            layer.i, layer.f, layer.type = i, row[0], row[2]
            layer.np = sum(p.numel() for p in layer.parameters())
            froms = [row[0]] if isinstance(row[0], int) else row[0]
            self.save.extend(j % i for j in froms if j != -1)
            layers.append(layer)
            ch = [*ch, c2] if i else [c2]
        self.model = nn.Sequential(*layers)
        self.names = [str(i) for i in range(yaml["nc"])]
        detect = self.model[-1]
        with torch.no_grad():
            probe = self.forward(torch.zeros(1, 3, 256, 256))
        detect.stride = torch.tensor([256 / p.shape[-2] for p in probe])
        detect.anchors /= detect.stride.view(-1, 1, 1)
        self.stride = detect.stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        kept: list[torch.Tensor | None] = []
        for layer in self.model:
            if layer.f != -1:
                x = kept[layer.f] if isinstance(layer.f, int) else [
                    x if j == -1 else kept[j] for j in layer.f]
            x = layer(x)
            kept.append(x if layer.i in self.save else None)
        return x


def build(nc: int = 2, activation: type[nn.Module] = nn.ReLU, bn_eps: float = 1e-3,
          anchors: Any = None, seed: int = 0) -> DetectionModel:
    """A yolov5n-shaped model with random weights and BN statistics, eval mode."""
    torch.manual_seed(seed)
    yaml = {**YOLOV5N, "nc": nc}
    if anchors is not None:
        yaml["anchors"] = anchors
    Conv.act_type = activation
    try:
        model = DetectionModel(yaml)
    finally:
        Conv.act_type = nn.SiLU
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = bn_eps, 0.03
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.0005, 0.05)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@contextlib.contextmanager
def _models_package() -> Iterator[None]:
    names = {"models": (), "models.common": (Conv, Bottleneck, C3, SPPF, Concat),
             "models.yolo": (Detect, DetectionModel)}
    saved = {cls: (cls.__module__, cls.__qualname__) for group in names.values() for cls in group}
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        for cls in classes:
            cls.__module__ = module_name
            setattr(module, cls.__name__, cls)
        sys.modules[module_name] = module
    try:
        yield
    finally:
        for module_name in names:
            sys.modules.pop(module_name, None)
        for cls, (module_name, qualname) in saved.items():
            cls.__module__, cls.__qualname__ = module_name, qualname


def save_checkpoint(path: Path, model: DetectionModel, ema_only: bool = False,
                    half: bool = True, extra: dict | None = None) -> Path:
    """torch.save a YOLOv5-style training checkpoint (fp16 like YOLOv5's strip_optimizer)."""
    saved = model.half() if half else model
    checkpoint = {"epoch": -1, "best_fitness": None, "model": None if ema_only else saved,
                  "ema": saved if ema_only else None, "updates": None, "optimizer": None,
                  "opt": {"imgsz": 640}, "date": "2026-01-01T00:00:00", **(extra or {})}
    with _models_package():
        torch.save(checkpoint, path)
    if half:
        model.float()
    return path
