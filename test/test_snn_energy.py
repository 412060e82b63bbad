"""Energy accounting against figures worked out by hand."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.energy import EnergyMeter, energy_report
from suhd_ros.snn.layers import (
    OutputIntegrator,
    SpikeMaxPool,
    SpikeUpsample,
    SpikingConv,
    reset_statistics,
    set_engine,
)

torch.set_num_threads(1)
CODING = SpikeCoding("stdi", 2, 1)  # tau = (2, 1), L = 3; levels 0, 1, 2, 3 send 0, 1, 1, 2 spikes


def _conv(c_in: int, c_out: int, k: int = 1, stride: int = 1, weight=None, bias=None):
    conv = nn.Conv2d(c_in, c_out, k, stride, k // 2)
    with torch.no_grad():
        conv.weight.copy_(torch.zeros_like(conv.weight) if weight is None else weight)
        conv.bias.copy_(torch.zeros(c_out) if bias is None else torch.tensor(bias))
    return conv


class HandNet(nn.Module):
    """direct 1x1 conv (1 -> 2) -> 3x3 conv (2 -> 3) -> 1x1 output conv (3 -> 1), on 2x2 pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = SpikingConv(_conv(1, 2, weight=torch.tensor([1.0, 2.0]).view(2, 1, 1, 1),
                                    bias=[0.0, 0.25]), 1.0, CODING, direct_input=True)
        w2 = torch.zeros(3, 2, 3, 3)
        w2[:, :, 1, 1] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
        self.c2 = SpikingConv(_conv(2, 3, 3, weight=w2), 1.25, CODING)
        self.head = OutputIntegrator(_conv(3, 1), CODING)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.c2(self.c1(x)))


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_hand_worked_two_conv_network(engine: str) -> None:
    net = set_engine(HandNet(), engine)
    net(torch.tensor([0.5, 1.0, 2.0, 5.0]).view(1, 1, 2, 2))
    report = energy_report(net, (1, 2, 2))
    layers = {layer.name: layer for layer in report.layers}
    # c1: ch0 V = 0.5, 1, 2, 5 -> levels 0, 1, 2, 3 -> 0+1+1+2 = 4 spikes;
    #     ch1 V = 1.25, 2.25, 4.25, 10.25 -> levels 1, 2, 3, 3 -> 1+1+2+2 = 6 spikes.
    # c2 (theta 1.25): ch0 V = 0, 1, 2, 3 -> levels 0, 0, 1, 2 -> 2 spikes;
    #     ch1 V = 1, 2, 3, 3 -> levels 0, 1, 2, 2 -> 3; ch2 V = .5, 1.5, 2.5, 3 -> 0, 1, 2, 2 -> 3.
    assert layers["c1"].spikes == 10 and layers["c2"].spikes == 8 and layers["head"].spikes == 0
    assert (layers["c1"].neurons, layers["c2"].neurons, layers["head"].neurons) == (8, 12, 0)
    assert layers["c1"].spikes_per_neuron_step == pytest.approx(10 / 16)
    assert layers["c2"].spikes_per_neuron_step == pytest.approx(8 / 24)
    # fan-out: c1 -> c2 = 3 * 3 * 3 / 1 = 27 synapses; c2 -> head = 1 * 1 * 1 = 1.
    assert (layers["c1"].fanout, layers["c2"].fanout) == (27, 1)
    assert report.sops == 10 * 27 + 8 * 1 == 278
    # MACs: c1 2*1*1*4 = 8 (the SNN's only ones), c2 3*2*9*4 = 216, head 1*3*1*4 = 12.
    assert [layers[n].ann_macs for n in ("c1", "c2", "head")] == [8, 216, 12]
    assert report.macs_first == 8 and report.macs_ann == 236
    assert report.spikes == 18 and report.frames == 1 and report.T == 2
    assert report.energy_snn == pytest.approx(4.6e-12 * 8 + 0.9e-12 * 278)
    assert report.energy_ann == pytest.approx(4.6e-12 * 236)
    cheap = energy_report(net, (1, 2, 2), e_mac=1.0, e_ac=0.5)
    assert (cheap.energy_snn, cheap.energy_ann) == (8 + 139, 236)
    assert dataclasses.asdict(report)["layers"][0]["name"] == "c1"


class Branchy(nn.Module):
    """p feeds a chain of two calls of one max-pool q (as SPPF does), a 2x upsample + concat into
    a strided conv c, and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.p = SpikingConv(nn.Conv2d(3, 2, 1), 0.1, CODING, direct_input=True)
        self.q = SpikeMaxPool(3, 1, 1, 0.1, CODING)
        self.up = SpikeUpsample(2)
        self.c = SpikingConv(nn.Conv2d(6, 5, 3, 2, 1), 0.1, CODING)
        self.r = SpikingConv(nn.Conv2d(2, 2, 1), 0.1, CODING)
        self.head = OutputIntegrator(nn.Conv2d(2, 3, 1), CODING)
        self.head2 = OutputIntegrator(nn.Conv2d(5, 1, 1), CODING)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.p(x)
        y1 = self.q(p)
        y2 = self.q(y1)
        c = self.c(torch.cat([self.up(p), self.up(y1), self.up(y2)], dim=-3))
        return self.head(p + self.r(p)), self.head2(c)


def _hand_spikes(levels: torch.Tensor) -> float:
    """Spikes of levels 0..3 at T = 2, f_c = 1: 0, 1 (t=2), 1 (t=1), 2."""
    return float(sum(int((levels == n).sum()) * k for n, k in enumerate((0, 1, 1, 2))))


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_fanout_through_concat_upsample_add_and_pool_chain(engine: str) -> None:
    net = set_engine(Branchy(), engine)
    p_out = []
    net.p.register_forward_hook(lambda _m, _i, out: p_out.append(out))
    net(torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(1)))
    meter = EnergyMeter(net)
    report = meter.report((2, 3, 4, 4))
    layers = {layer.name: layer for layer in report.layers}
    c_synapses = 5 * 9 / 4  # per input value of c (stride 2)
    # p: 4 copies into c, 1 into r (2 synapses), 1 into head through the add (3 synapses);
    # the pool q consumes nothing; each of its two outputs goes 4 times into c.
    expected = {"p": 4 * c_synapses + 2 + 3, "q": 4 * c_synapses, "r": 3.0, "c": 1.0,
                "head": 0.0, "head2": 0.0}
    assert {n: layer.fanout for n, layer in layers.items()} == pytest.approx(expected)
    assert {n: layer.neurons for n, layer in layers.items()} == {
        "p": 32, "q": 64, "c": 80, "r": 32, "head": 0, "head2": 0}
    assert layers["q"].kind == "max-pool" and layers["q"].ann_macs == 0
    assert report.macs_first == 2 * 3 * 16
    assert report.macs_ann == 96 + 5 * 6 * 9 * 16 + 2 * 2 * 16 + 3 * 2 * 16 + 1 * 5 * 16
    assert report.sops == pytest.approx(sum(layers[n].spikes * expected[n] for n in expected))
    p_levels = torch.round(CODING.decode(p_out[0]) / 0.1 if engine == "reference"
                           else p_out[0] / 0.1)
    y1 = F.max_pool2d(p_levels, 3, 1, 1)
    assert report.frames == 2
    assert layers["p"].spikes == pytest.approx(_hand_spikes(p_levels) / 2)
    assert layers["q"].spikes == pytest.approx(
        (_hand_spikes(y1) + _hand_spikes(F.max_pool2d(y1, 3, 1, 1))) / 2)
    # per sample: the two frames of the batch add up to twice the mean
    per_sample = [meter.report((3, 4, 4), sample=i).spikes for i in range(2)]
    assert sum(per_sample) == pytest.approx(2 * report.spikes)
    assert net.p.engine == engine and net.p.record_statistics  # the probe restored the state


def test_report_needs_statistics() -> None:
    net = HandNet()
    with pytest.raises(ValueError, match="statistics"):
        energy_report(net, (1, 2, 2))
    net(torch.ones(1, 1, 2, 2))
    reset_statistics(net)
    with pytest.raises(ValueError, match="statistics"):
        energy_report(net, (1, 2, 2))
