"""The peer anyone can run: SpikingJelly 2.0's ann2snn converter on the same ANN (our glue).

SpikingJelly converts by tracing the ANN with torch.fx and swapping each ReLU for an IF neuron
(reset by subtraction) between two voltage scalers; `RateCodingRecipe` calibrates the scales.
YOLOv5's Detect head decodes boxes with shape-dependent Python (grids built from the map
sizes), which fx cannot trace, so we hand SpikingJelly the network with the head cut after its
1x1 convs (`RawHead`). It runs that spiking trunk T steps on the same analog image (the usual
ann2snn input), we average the head's outputs over T and decode them with a copy of our own
Detect whose convs are identities. Everything else (max-pools, SPPF, concat, residual adds,
upsampling) is SpikingJelly's own conversion; `graph_census` says what it made of them.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence

import numpy as np
from spikingjelly.activation_based import ann2snn, functional
from torch import Tensor, fx, nn

from suhd_ros.conversion import batches_of
from suhd_ros.detector import Detector
from suhd_ros.yolo.model_file import build_model, load_model_file


class RawHead(nn.Module):
    """Detect's 1x1 convs without the decoding: the part of the head fx can trace."""

    def __init__(self, detect: nn.Module) -> None:
        super().__init__()
        self.m = copy.deepcopy(detect.m)
        self.i, self.f = detect.i, detect.f  # read by YOLOv5.forward

    def forward(self, x: list[Tensor]) -> tuple[Tensor, ...]:
        return tuple(conv(xi) for conv, xi in zip(self.m, x, strict=True))


class RateCodedYOLO(nn.Module):
    """The converted trunk run T steps per image, then our decoding: YOLOv5's eval interface."""

    def __init__(self, trunk: nn.Module, detect: nn.Module, T: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.decoder = copy.deepcopy(detect)
        self.decoder.m = nn.ModuleList(nn.Identity() for _ in self.decoder.m)
        self.T = T

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        functional.reset_net(self.trunk)  # every image starts from rest
        total = [y.clone() for y in self.trunk(x)]
        for _ in range(self.T - 1):
            for acc, y in zip(total, self.trunk(x), strict=True):
                acc.add_(y)
        return self.decoder([acc / self.T for acc in total])


def convert(model_path: str, calibration: Sequence[np.ndarray], percentile: float
            ) -> tuple[fx.GraphModule, nn.Module]:
    """SpikingJelly's conversion of the model file's ANN (trunk, our Detect for decoding)."""
    model_file = load_model_file(model_path)
    ann = build_model(model_file).eval()
    size = model_file.metadata.get("input_size") or [640, 640]
    trunk = copy.deepcopy(ann)
    trunk.model[-1] = RawHead(ann.detect)
    recipe = ann2snn.RateCodingRecipe(dataloader=list(batches_of(calibration, size)),
                                      mode=f"{percentile:g}%")
    return ann2snn.Converter(recipe).convert(trunk), ann.detect


def peer_detector(model_path: str, trunk: nn.Module, detect: nn.Module, T: int) -> Detector:
    """A Detector (same letterbox, NMS, interface) whose network is SpikingJelly's at T steps."""
    detector = Detector(model_path, "cpu", "ann")
    detector.model = RateCodedYOLO(trunk, detect, T).eval()
    return detector


def graph_census(trunk: fx.GraphModule) -> dict[str, int]:
    """Calls per module type / function in the converted trunk's graph (what became what)."""
    modules = dict(trunk.named_modules())
    census: Counter[str] = Counter()
    for node in trunk.graph.nodes:
        if node.op == "call_module":
            module = modules[node.target]
            census[f"{type(module).__module__.split('.')[-1]}.{type(module).__name__}"] += 1
        elif node.op == "call_function":
            census[getattr(node.target, "__name__", str(node.target))] += 1
    return dict(sorted(census.items()))


def pools_fed_by_spikes(trunk: fx.GraphModule) -> tuple[int, int]:
    """(max-pool calls, those whose input is a neuron's scaled spike output, not a potential)."""
    modules = dict(trunk.named_modules())

    def is_pool(node: fx.Node) -> bool:
        return node.op == "call_module" and isinstance(modules[node.target], nn.MaxPool2d)

    def spike_source(node: fx.Node) -> bool:
        while is_pool(node):  # SPPF chains pools
            node = node.args[0]
        return node.op == "call_module" and str(node.target).endswith(".scaler1")

    pools = [n for n in trunk.graph.nodes if is_pool(n)]
    return len(pools), sum(spike_source(n.args[0]) for n in pools)
