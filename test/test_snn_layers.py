"""Spiking layers in both engines against independent computations on decoded values."""

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.layers import (
    OutputIntegrator,
    SpikeMaxPool,
    SpikeUpsample,
    SpikingConv,
    level_spike_counts,
    reset_statistics,
    set_counter,
    set_engine,
    set_statistics,
)
from suhd_ros.snn.neurons import spikes_from_levels, step_spike_counts

torch.set_num_threads(1)
CODING = SpikeCoding("stdi", 3, 2)  # tau = (3, 2, 1), L = 12


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _train(levels: torch.Tensor, theta: float, coding: SpikeCoding = CODING) -> torch.Tensor:
    """The reference engine's input for given levels: x[t] = theta * s(t)."""
    return theta * spikes_from_levels(levels, coding)


def _decoded(x: torch.Tensor, coding: SpikeCoding = CODING) -> torch.Tensor:
    """sum_t tau(t) x[t], with tau written out by hand."""
    tau = torch.arange(coding.T, 0, -1, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return (tau * x).sum(0)


def _both(layer: nn.Module, fused_input: torch.Tensor, reference_input: torch.Tensor):
    """Outputs (decoded) and spike counts of a layer in the fused and the reference engine."""
    out = {}
    for engine, x in (("fused", fused_input), ("reference", reference_input)):
        reset_statistics(set_engine(layer, engine))
        y = layer(x)
        out[engine] = (_decoded(y) if engine == "reference" and y.dim() == 5 else y,
                       getattr(layer, "spike_counts", None))
    return out


def _random_conv(c_in: int, c_out: int, k: int, stride: int, seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, stride, k // 2)
    nn.init.uniform_(conv.weight, -0.5, 0.5)
    return conv


@pytest.mark.parametrize("per_channel", [False, True])
def test_direct_input_conv_is_quantised_ann_layer(per_channel: bool) -> None:
    conv = _random_conv(3, 4, 3, 2, seed=0)
    image = torch.rand(2, 3, 10, 10, generator=_generator(1))
    theta = torch.tensor([0.05, 0.1, 0.02, 0.08]) if per_channel else torch.tensor(0.06)
    layer = SpikingConv(conv, theta, CODING, direct_input=True)
    th = theta.view(-1, 1, 1) if per_channel else theta
    expected = th * torch.clamp(torch.floor(F.relu(conv(image)) / th), 0, 12)
    results = _both(layer, image, image)
    for decoded, _ in results.values():
        torch.testing.assert_close(decoded, expected)
    assert torch.equal(results["fused"][1], results["reference"][1])


def test_hidden_conv_integrates_trains() -> None:
    conv = _random_conv(4, 5, 3, 1, seed=2)
    levels = torch.randint(0, 13, (2, 4, 6, 6), generator=_generator(3)).float()
    theta_in, theta = 0.03, 0.02
    layer = SpikingConv(conv, theta, CODING)
    results = _both(layer, theta_in * levels, _train(levels, theta_in))
    expected = theta * torch.clamp(torch.floor(conv(theta_in * levels) / theta), 0, 12)
    for decoded, counts in results.values():
        torch.testing.assert_close(decoded, expected, rtol=1e-5, atol=1e-6)
        assert counts.shape == (2, 3)
    assert torch.equal(results["fused"][1], results["reference"][1])
    hand = spikes_from_levels(torch.round(expected / theta), CODING).sum(dim=(2, 3, 4)).T
    assert torch.equal(results["fused"][1], hand.long())


def _numpy_max_pool(a: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """Max over each window's in-bounds values (padding never wins)."""
    n, c, h, w = a.shape
    out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, c, out_h, out_w), dtype=a.dtype)
    for i, j in itertools.product(range(out_h), range(out_w)):
        top, left = i * s - p, j * s - p
        window = a[:, :, max(top, 0):top + k, max(left, 0):left + k]
        out[:, :, i, j] = window.max(axis=(2, 3))
    return out


@pytest.mark.parametrize(("k", "s", "p"), [(3, 1, 1), (5, 1, 2), (13, 1, 6), (3, 2, 1),
                                           (5, 2, 0), (13, 2, 6)])
def test_spike_max_pool_is_max_of_decoded(k: int, s: int, p: int) -> None:
    theta = 0.07
    levels = torch.randint(0, 13, (2, 3, 15, 15), generator=_generator(k * 10 + s)).float()
    pool = SpikeMaxPool(k, s, p, theta, CODING)
    results = _both(pool, theta * levels, _train(levels, theta))
    expected = torch.from_numpy(_numpy_max_pool((theta * levels).numpy(), k, s, p))
    for decoded, _ in results.values():
        torch.testing.assert_close(decoded, expected)
    assert torch.equal(results["fused"][1], results["reference"][1])
    assert results["fused"][1].sum() > 0


def test_upsample_both_shapes() -> None:
    x = torch.arange(2 * 3 * 2 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 2, 3)
    y = SpikeUpsample(2)(x)
    assert y.shape == (2, 3, 2, 4, 6)
    for i, j in itertools.product(range(4), range(6)):
        assert torch.equal(y[..., i, j], x[..., i // 2, j // 2])
    torch.testing.assert_close(SpikeUpsample(3)(x[0]), F.interpolate(x[0], scale_factor=3))


def test_output_integrator_returns_analog_potential() -> None:
    conv = _random_conv(4, 6, 1, 1, seed=4)
    levels = torch.randint(0, 13, (1, 4, 5, 5), generator=_generator(5)).float()
    head = OutputIntegrator(conv, CODING)
    results = _both(head, 0.1 * levels, _train(levels, 0.1))
    for value, _ in results.values():
        torch.testing.assert_close(value, conv(0.1 * levels), rtol=1e-5, atol=1e-5)
        assert value.min() < 0  # never fires: negative potentials come out as they are


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (3, 3, 5, 3), (1, 1, 1, 1)])  # odd sizes too
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "uint8"])
@pytest.mark.parametrize("coding", [SpikeCoding("stdi", 4, 3), SpikeCoding("stdi", 1, 2),
                                    SpikeCoding("stdi", 4, 8), SpikeCoding("stdi", 6, 8),
                                    SpikeCoding("rate", 5), SpikeCoding("stdi", 8, 8)])
def test_level_spike_counts_match_spikes_from_levels(coding, layout, shape, monkeypatch) -> None:
    levels = torch.randint(0, coding.L + 1, shape, generator=_generator(6)).float()
    if layout == "channels_last":
        levels = levels.contiguous(memory_format=torch.channels_last)
    expected = spikes_from_levels(levels, coding).sum(dim=(2, 3, 4)).T.long()
    if layout == "uint8" and coding.L <= 255:  # a graph's levels (onnx_export.level_dtype)
        assert torch.equal(level_spike_counts(levels.to(torch.uint8), coding), expected)
    assert torch.equal(level_spike_counts(levels, coding), expected)
    assert torch.equal(step_spike_counts(levels, coding).long(), expected)
    monkeypatch.setattr("suhd_ros.snn.neurons.EXACT_FLOAT32_COUNT", 1)  # a layer too large
    counts = step_spike_counts(levels, coding)  # for exact float32 sums
    assert counts.dtype == torch.float64 and torch.equal(counts.long(), expected)


@pytest.mark.parametrize("on_a_thread", [False, True])
def test_statistics_accumulate_reset_and_switch_off(on_a_thread: bool) -> None:
    conv = _random_conv(3, 2, 3, 1, seed=7)
    net = nn.Sequential(SpikingConv(conv, 0.05, CODING, direct_input=True))
    image = torch.rand(2, 3, 6, 6, generator=_generator(8))
    layer = net[0]
    if on_a_thread:  # the counts wait in the tally until read, in call order
        set_counter(net, ThreadPoolExecutor(1))
    batch_counts = level_spike_counts(torch.round(net(image) / 0.05), CODING)
    assert torch.equal(layer.spike_counts, batch_counts) and batch_counts.sum() > 0
    net(image[:1])  # another batch size: per-sample counts start anew, totals go on
    assert layer.samples == 3 and torch.equal(layer.spike_counts, batch_counts[:1])
    assert torch.equal(layer.total_counts, 2 * batch_counts[0] + batch_counts[1])
    net(image[:1])
    assert torch.equal(layer.spike_counts, 2 * batch_counts[:1])
    reset_statistics(net)
    assert layer.samples == 0 and layer.spike_counts is None
    set_statistics(net, False)
    net(image)
    assert layer.samples == 0 and int(layer.total_counts.sum()) == 0


def test_engine_mismatch_is_reported() -> None:
    layer = SpikingConv(_random_conv(3, 2, 1, 1, seed=9), 0.1, CODING)
    with pytest.raises(ValueError, match="fused engine expects 4-D"):
        layer(torch.zeros(3, 1, 3, 4, 4))
    with pytest.raises(ValueError, match="engine must be one of"):
        set_engine(layer, "loop")
