"""Conversion of a tiny ANN with YOLOv5's layout; both engines; accuracy of the codings."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import calibrate_thresholds, convert_to_snn, fold_batchnorm, fold_bn
from suhd_ros.snn.energy import energy_report
from suhd_ros.snn.layers import (
    OutputIntegrator,
    SpikeMaxPool,
    SpikeProducer,
    SpikeUpsample,
    SpikingConv,
    reset_statistics,
    set_engine,
)
from suhd_ros.yolo.config import yolov5_description
from suhd_ros.yolo.model import YOLOv5

torch.set_num_threads(1)


class Conv(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU() if act is None else act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1 = Conv(c, c, 1)
        self.cv2 = Conv(c, c, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class SPPF(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1 = Conv(c, c // 2)
        self.cv2 = Conv(c * 2, c)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat([x, y1, y2, self.m(y2)], dim=-3))


class Detect(nn.Module):
    def __init__(self, channels: tuple[int, ...], outputs: int = 6) -> None:
        super().__init__()
        self.m = nn.ModuleList(nn.Conv2d(c, outputs, 1) for c in channels)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([conv(x).flatten(1) for conv, x in zip(self.m, xs, strict=True)], 1)


class TinyYolo(nn.Module):
    """Stem, residual, SPPF, upsample + concat, a strided max-pool and a two-scale head."""

    def __init__(self, act: nn.Module | None = None) -> None:
        super().__init__()
        self.stem = Conv(3, 8, 3, 2, act)
        self.down = Conv(8, 16, 3, 2)
        self.res = Bottleneck(16)
        self.sppf = SPPF(16)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.merge = Conv(24, 8, 3)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.detect = Detect((8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x3 = self.sppf(self.res(self.down(x0)))
        x5 = self.merge(torch.cat([self.up(x3), x0], dim=-3))
        return self.detect([x5, self.pool(x5)])


def tiny_yolo(seed: int = 0, act: nn.Module | None = None) -> TinyYolo:
    torch.manual_seed(seed)
    net = TinyYolo(act)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.3)
    return net.eval()


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def convert(net: nn.Module, coding: SpikeCoding, per_channel: bool = False, percentile=99.99):
    lambdas = calibrate_thresholds(net, [images(4, s) for s in (2, 3)], percentile,
                                   per_channel, progress=False)
    return convert_to_snn(net, lambdas, coding, example_size=(16, 16)), lambdas


def test_fold_bn_matches_conv_then_bn() -> None:
    net = tiny_yolo()
    x = torch.randn(2, 8, 8, 8)
    folded = fold_bn(net.down.conv, net.down.bn)
    torch.testing.assert_close(folded(x), net.down.bn(net.down.conv(x)), rtol=1e-5, atol=1e-5)
    x = images()
    reference = net(x)
    torch.testing.assert_close(fold_batchnorm(net)(x), reference, rtol=1e-5, atol=1e-5)
    assert isinstance(net.down.bn, nn.Identity)


@pytest.mark.parametrize("per_channel", [False, True])
def test_calibration_matches_exact_percentile(per_channel: bool) -> None:
    net = tiny_yolo()
    batches = [images(3, s) for s in (5, 6)]
    outputs = []
    hook = net.merge.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    lambdas = calibrate_thresholds(net, batches, 99.0, per_channel, progress=False)
    hook.remove()
    acts = torch.cat(outputs).transpose(0, 1).flatten(1)
    if not per_channel:
        acts = acts.reshape(1, -1)
    # lambda must lie between the order statistics around rank 0.99 M, up to one bin width
    ordered = acts.sort(dim=1).values
    rank = 0.99 * acts.shape[1]
    low = ordered[:, math.floor(rank) - 1]
    high = ordered[:, min(math.ceil(rank), acts.shape[1] - 1)]
    tolerance = acts.amax(dim=1) / 2000  # the histogram's bin is at most max / 2048
    lam = lambdas["merge"]
    assert lam.shape == ((8,) if per_channel else ())
    lam = lam.reshape(-1)
    alive = acts.amax(dim=1) > 0
    assert torch.all(lam[alive] >= low[alive] - tolerance[alive])
    assert torch.all(lam[alive] <= high[alive] + tolerance[alive])
    assert torch.all((high - low)[alive] < acts.amax(dim=1)[alive] / 10)  # a tight bracket
    assert torch.all(lam[~alive] == lam.max())  # silent channels borrow the layer's largest
    assert per_channel == bool((~alive).any())  # this net has silent channels, not layers


def test_structure_of_converted_net() -> None:
    net = tiny_yolo()
    snn, lambdas = convert(net, SpikeCoding("stdi", 4, 2))
    assert isinstance(net.stem, Conv) and isinstance(net.pool, nn.MaxPool2d)  # ann untouched
    spiking = {name for name, m in snn.named_modules() if isinstance(m, SpikingConv)}
    assert spiking == {"stem", "down", "res.cv1", "res.cv2", "sppf.cv1", "sppf.cv2", "merge"}
    assert [n for n, m in snn.named_modules() if getattr(m, "direct_input", False)] == ["stem"]
    assert isinstance(snn.up, SpikeUpsample)
    assert all(isinstance(m, OutputIntegrator) for m in snn.detect.m)
    L = snn.stem.coding.L
    assert L == 20
    torch.testing.assert_close(snn.merge.theta, lambdas["merge"] / L)
    assert isinstance(snn.pool, SpikeMaxPool) and isinstance(snn.sppf.m, SpikeMaxPool)
    torch.testing.assert_close(snn.pool.theta, snn.merge.theta)
    torch.testing.assert_close(snn.sppf.m.theta, snn.sppf.cv1.theta)


def _quantised_ann_output(net: nn.Module, lambdas: dict, coding: SpikeCoding, x: torch.Tensor):
    """The ANN with every conv block's output replaced by theta * clip(floor(a / theta), 0, L)."""
    def quantise_hook(name):
        def hook(_module, _inputs, out):
            theta = lambdas[name] / coding.L
            if theta.dim() == 1:
                theta = theta.view(-1, 1, 1)
            shift = 0.5 if coding.half_start else 0.0
            return theta * torch.clamp(torch.floor(out / theta + shift), 0, coding.L)
        return hook
    hooks = [module.register_forward_hook(quantise_hook(name))
             for name, module in net.named_modules() if name in lambdas]
    with torch.no_grad():
        out = net(x)
    for h in hooks:
        h.remove()
    return out


@pytest.mark.parametrize(("coding", "per_channel"), [
    (SpikeCoding("stdi", 4, 2), False),
    (SpikeCoding("stdi", 3, 1, half_start=True), True),
    (SpikeCoding("rate", 5), False),
])
def test_engines_agree_and_equal_quantised_ann(coding: SpikeCoding, per_channel: bool) -> None:
    net = tiny_yolo(seed=3)
    snn, lambdas = convert(net, coding, per_channel)
    x = images(2, seed=9)
    with torch.no_grad():
        fused = snn(x)
        fused_counts = _counts(snn)
        reset_statistics(set_engine(snn, "reference"))
        reference = snn(x)
        reference_counts = _counts(snn)
    expected = _quantised_ann_output(net, lambdas, coding, x)
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-4)
    assert fused_counts.keys() == reference_counts.keys() and len(fused_counts) == 9
    for name, counts in fused_counts.items():
        assert counts.shape == (2, coding.T)
        assert torch.equal(counts, reference_counts[name]), name
    assert sum(int(c.sum()) for c in fused_counts.values()) > 0


def _counts(snn: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.spike_counts for name, m in snn.named_modules()
            if isinstance(m, SpikeProducer)}


def _output_error(net: nn.Module, coding: SpikeCoding) -> float:
    snn, _ = convert(net, coding, percentile=100.0)
    x = images(4, seed=11)
    with torch.no_grad():
        return F.l1_loss(snn(x), net(x)).item()


def test_rate_error_falls_with_T_and_stdi_beats_long_rate() -> None:
    net = tiny_yolo(seed=4)
    rate = [_output_error(net, SpikeCoding("rate", T)) for T in (4, 16, 64)]
    assert rate[0] > rate[1] > rate[2] > 0
    stdi = _output_error(net, SpikeCoding("stdi", 4, 4))
    assert stdi < _output_error(net, SpikeCoding("rate", 32))


@pytest.mark.parametrize(("T", "f_c"), [(2, 1), (4, 1)])
def test_half_start_rounds_and_beats_floor(T: int, f_c: int) -> None:
    net = tiny_yolo(seed=5)
    floor = _output_error(net, SpikeCoding("stdi", T, f_c))
    assert _output_error(net, SpikeCoding("stdi", T, f_c, half_start=True)) < floor


def test_silu_needs_permission() -> None:
    net = tiny_yolo(act=nn.SiLU())
    lambdas = calibrate_thresholds(net, [images(2)], progress=False)
    with pytest.raises(ValueError, match="SiLU"):
        convert_to_snn(net, lambdas, SpikeCoding(), example_size=(16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one statement by the caller, not one per layer
        snn = convert_to_snn(net, lambdas, SpikeCoding(), allow_silu=True, example_size=(16, 16))
    assert isinstance(snn.stem, SpikingConv)


def test_converts_yolov5n() -> None:
    ann = YOLOv5.from_description(yolov5_description("n", 8)).eval()
    x = torch.rand(1, 3, 64, 64)
    lambdas = calibrate_thresholds(ann, [x], progress=False)
    snn = convert_to_snn(ann, lambdas, SpikeCoding("stdi", 4, 4), example_size=(64, 64))
    assert sum(isinstance(m, SpikeMaxPool) for m in snn.modules()) == 1
    assert sum(isinstance(m, OutputIntegrator) for m in snn.modules()) == 3
    assert not any(isinstance(m, nn.BatchNorm2d | nn.ReLU | nn.SiLU) for m in snn.modules())
    with torch.no_grad():
        fused = snn(x)
        reference = set_engine(snn, "reference")(x)
    for a, b in zip(torch.utils._pytree.tree_leaves(fused),
                    torch.utils._pytree.tree_leaves(reference), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    layers = {layer.name: layer for layer in energy_report(snn, (3, 64, 64)).layers}
    sppf = next(name for name, m in snn.named_modules() if isinstance(m, SpikeMaxPool))
    cv2 = snn.get_submodule(sppf.rpartition(".")[0]).cv2.conv
    cv1 = snn.get_submodule(sppf.rpartition(".")[0]).cv1.conv
    assert layers[sppf].fanout == cv2.out_channels  # each pooled map feeds the 1x1 cv2 once
    assert layers[sppf].neurons == 3 * cv1.out_channels * 2 * 2  # three calls at stride 32
