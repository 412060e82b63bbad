"""YOLOv5 built from its description by one parser, with Ultralytics' parameter names.

Every layer of ``model.model`` carries ``.i`` (its index) and ``.f`` (where its input comes
from: -1 for the previous layer, or a list of indices), which is all a graph transformation
(such as the SNN converter) needs to walk the network.
"""

import copy
import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from suhd_ros.yolo.blocks import BN_EPS, BN_MOMENTUM, C3, SPPF, Bottleneck, Concat, Conv, Detect

STRIDE_PROBE_SIZE = 256

# modules whose first argument is an output width scaled by width_multiple
_CONV_LIKE: dict[str, type[nn.Module]] = {
    "Conv": Conv,
    "Bottleneck": Bottleneck,
    "C3": C3,
    "SPPF": SPPF,
}
_REPEATS_INSIDE = ("C3",)  # the repeat count goes into the block, not around it


def make_divisible(x: float, divisor: int = 8) -> int:
    """Round a channel count up to a multiple of ``divisor``, as YOLOv5 does."""
    return math.ceil(x / divisor) * divisor


def _resolve_args(args: list, description: Mapping) -> list:
    """Replace the yaml's symbolic arguments ("nc", "anchors", "None") by their values."""
    symbols = {"nc": description["nc"], "anchors": description["anchors"], "None": None}
    return [symbols.get(a, a) if isinstance(a, str) else a for a in args]


def _scaled_repeats(n: int, depth_multiple: float) -> int:
    """Depth scaling as YOLOv5 does: only repeated blocks shrink, never below one."""
    return max(round(n * depth_multiple), 1) if n > 1 else n


def _build_layer(
    module: str,
    f: int | list[int],
    n: int,
    args: list,
    ch: Mapping[int, int],
    description: Mapping,
    activation: str,
) -> tuple[nn.Module, int]:
    """One row of the description -> (module, its output channels); ``ch`` maps 'from' indices
    to channel counts."""
    if module in _CONV_LIKE:
        c1 = ch[f]
        c2 = make_divisible(args[0] * description["width_multiple"])
        kwargs = {"activation": activation}
        if module in _REPEATS_INSIDE:
            block = _CONV_LIKE[module](c1, c2, n, *args[1:], **kwargs)
        else:
            block = _repeat(lambda: _CONV_LIKE[module](c1, c2, *args[1:], **kwargs), n)
        return block, c2
    if module == "nn.Upsample":
        return _repeat(lambda: nn.Upsample(*args), n), ch[f]
    if module == "Concat":
        return Concat(*args), sum(ch[j] for j in f)
    if module == "Detect":
        nc, anchors = args[0], args[1]
        if not isinstance(anchors, list):
            raise ValueError("Detect needs explicit anchors (a list of pixel sizes per level); "
                             f"got {anchors!r}")
        return Detect(nc, anchors, [ch[j] for j in f]), 0
    raise ValueError(f"unsupported module {module!r} in the YOLOv5 description")


def _repeat(make: Callable[[], nn.Module], n: int) -> nn.Module:
    return nn.Sequential(*(make() for _ in range(n))) if n > 1 else make()


def parse_model(
    description: Mapping, ch: int = 3, activation: str = "relu"
) -> tuple[nn.Sequential, list[int]]:
    """Build the layer list; returns the layers and the indices whose outputs must be kept."""
    rows = list(description["backbone"]) + list(description["head"])
    channels: list[int] = [ch]
    layers: list[nn.Module] = []
    save: set[int] = set()
    for i, (f, n, module, args) in enumerate(rows):
        n = _scaled_repeats(n, description["depth_multiple"])
        args = _resolve_args(list(args), description)
        lookup = _channel_lookup(channels)
        layer, c2 = _build_layer(module, f, n, args, lookup, description, activation)
        layer.i, layer.f, layer.type = i, f, module
        save.update(j % i for j in ([f] if isinstance(f, int) else f) if j != -1)
        layers.append(layer)
        channels.append(c2)
    return nn.Sequential(*layers), sorted(save)


def _channel_lookup(channels: list[int]) -> dict[int, int]:
    """Map a 'from' index (-1 or a layer index) to that input's channel count.

    ``channels[0]`` is the image's, ``channels[j + 1]`` layer j's output.
    """
    lookup = {j: c for j, c in enumerate(channels[1:])}
    lookup[-1] = channels[-1]
    return lookup


def load_checked_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strict load that first names every missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state_dict]
    problems += [f"unexpected {k}" for k in state_dict if k not in own]
    problems += [
        f"{k}: shape {tuple(state_dict[k].shape)} but the description gives {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:8]) + (" ..." if len(problems) > 8 else "")
        raise ValueError(f"{len(problems)} tensor(s) do not match the model: {shown}")
    model.load_state_dict(state_dict, strict=True)


def _bn_setting(description: Mapping, key: str, default: float, low: float, high: float) -> float:
    value = description.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value < high:
        raise ValueError(f"{key} must be a number in ({low}, {high}), got {value!r}")
    return float(value)


def _set_batchnorm(model: nn.Module, description: Mapping) -> None:
    """Every BN layer gets the description's eps and momentum: eps changes what the weights
    compute (a checkpoint trained with eps=1e-5 read with 1e-3 is off by up to ~9 %)."""
    eps = _bn_setting(description, "bn_eps", BN_EPS, 0.0, 1.0)
    momentum = _bn_setting(description, "bn_momentum", BN_MOMENTUM, 0.0, 1.0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps, module.momentum = eps, momentum


class YOLOv5(nn.Module):
    """YOLOv5 v6.x detection network.

    Training mode returns Detect's raw outputs; eval mode returns (decoded [N, M, 5 + nc] in
    input pixels, raw outputs).
    """

    def __init__(
        self,
        description: Mapping,
        activation: str = "relu",
        names: list[str] | None = None,
        ch: int = 3,
    ) -> None:
        super().__init__()
        self.description = copy.deepcopy(dict(description))
        self.activation = activation
        nc = self.description["nc"]
        self.names = list(names) if names is not None else [f"class{i}" for i in range(nc)]
        if len(self.names) != nc:
            raise ValueError(f"{len(self.names)} class names for nc={nc}")
        self.model, self.save = parse_model(self.description, ch, activation)
        _set_batchnorm(self.model, self.description)
        self._init_strides(ch)
        self._initialize_biases()

    @classmethod
    def from_description(
        cls, description: Mapping, activation: str = "relu", names: list[str] | None = None
    ) -> "YOLOv5":
        return cls(description, activation=activation, names=names)

    @property
    def detect(self) -> Detect:
        return self.model[-1]

    @property
    def stride(self) -> torch.Tensor:
        return self.detect.stride

    def forward(
        self, x: torch.Tensor
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        outputs: list[torch.Tensor | None] = []
        for layer in self.model:
            if layer.f != -1:
                x = outputs[layer.f] if isinstance(layer.f, int) else [
                    x if j == -1 else outputs[j] for j in layer.f
                ]
            x = layer(x)
            outputs.append(x if layer.i in self.save else None)
        return x

    def _init_strides(self, ch: int) -> None:
        """Strides from a probe image; anchors go from pixels to grid units as in YOLOv5."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            _, raw = self(torch.zeros(1, ch, STRIDE_PROBE_SIZE, STRIDE_PROBE_SIZE))
            stride = torch.tensor([STRIDE_PROBE_SIZE / r.shape[2] for r in raw])
            self.detect.stride.copy_(stride)
            self.detect.anchors /= stride.view(-1, 1, 1)
        self.train(was_training)

    def _initialize_biases(self) -> None:
        """Objectness prior of 8 objects per 640 image, class prior 0.6 / nc (YOLOv5's)."""
        detect = self.detect
        with torch.no_grad():
            for conv, s in zip(detect.m, detect.stride.tolist(), strict=True):
                b = conv.bias.view(detect.na, -1)
                b[:, 4] += math.log(8 / (640 / s) ** 2)
                b[:, 5:] += math.log(0.6 / (detect.nc - 0.99))
