"""The STDI neuron sends exactly the quantiser's level, for every T and f_c in 1..8."""

import itertools
import math

import numpy as np
import pytest
import torch

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.neurons import SpikingNeuron, quantise, spikes_from_levels, stdi_fire

torch.set_num_threads(1)

GRID = list(itertools.product(range(1, 9), range(1, 9)))


def _level(spikes: torch.Tensor, coding: SpikeCoding) -> torch.Tensor:
    """Decode a spike train by hand: sum_t tau(t) s(t) with tau(t) = T - t + 1 (or 1 for rate)."""
    weights = [1] * coding.T if coding.kind == "rate" else list(range(coding.T, 0, -1))
    return sum(w * s for w, s in zip(weights, spikes, strict=True))


@pytest.mark.parametrize(("T", "f_c"), GRID)
def test_integer_grid_sends_clipped_level(T: int, f_c: int) -> None:
    coding = SpikeCoding("stdi", T, f_c)
    L = f_c * T * (T + 1) // 2
    assert coding.L == L
    theta = 0.25  # a power of two: k * theta is exact
    k = torch.arange(-2, L + 4, dtype=torch.float64)
    spikes = stdi_fire(k * theta, theta, coding)
    expected = np.clip(np.arange(-2, L + 4), 0, L)
    np.testing.assert_array_equal(_level(spikes, coding).numpy(), expected)
    np.testing.assert_array_equal(quantise(k * theta, theta, coding).numpy(), expected)
    assert spikes.min() >= 0 and spikes.max() <= f_c
    assert torch.equal(spikes_from_levels(quantise(k * theta, theta, coding), coding), spikes)


@pytest.mark.parametrize(("T", "f_c"), GRID)
def test_random_reals_floor_and_round(T: int, f_c: int) -> None:
    gen = torch.Generator().manual_seed(T * 10 + f_c)
    theta = torch.tensor(0.1 + torch.rand(1, generator=gen).item(), dtype=torch.float64)
    for half_start in (False, True):
        coding = SpikeCoding("stdi", T, f_c, half_start)
        V = (torch.rand(2000, generator=gen, dtype=torch.float64) * 1.3 - 0.1) * coding.L * theta
        spikes = stdi_fire(V, theta, coding)
        ratio = (V / theta).numpy()
        level = np.floor(ratio + 0.5) if half_start else np.floor(ratio)
        np.testing.assert_array_equal(_level(spikes, coding).numpy(), np.clip(level, 0, coding.L))
        assert spikes.max() <= f_c
        assert torch.equal(spikes_from_levels(quantise(V, theta, coding), coding), spikes)


@pytest.mark.parametrize("T", [1, 2, 5, 8])
def test_rate_coding_is_if_with_L_equal_T(T: int) -> None:
    coding = SpikeCoding("rate", T)
    assert coding.L == T and coding.tau == (1,) * T
    k = torch.arange(-2, T + 4, dtype=torch.float64)
    spikes = stdi_fire(k * 0.5, 0.5, coding)
    assert spikes.max() <= 1
    np.testing.assert_array_equal(spikes.sum(0).numpy(), np.clip(np.arange(-2, T + 4), 0, T))
    assert torch.equal(spikes_from_levels(quantise(k * 0.5, 0.5, coding), coding), spikes)


def test_stdi_sends_early_spikes_first() -> None:
    # T = 3, f_c = 2: tau = (3, 2, 1), level 7 -> 2 spikes at t=1 (6), 0 at t=2, 1 at t=3.
    coding = SpikeCoding("stdi", 3, 2)
    spikes = stdi_fire(torch.tensor([7.2]), 1.0, coding)
    assert spikes.flatten().tolist() == [2.0, 0.0, 1.0]


def test_neuron_state_per_channel_theta() -> None:
    coding = SpikeCoding("stdi", 4, 2)
    theta = torch.tensor([0.5, 2.0])
    neuron = SpikingNeuron(theta, coding)
    V = torch.tensor([[[[3.3]], [[3.3]]]])  # [N=1, C=2, 1, 1]
    neuron.charge(V)
    assert neuron.u.flatten().tolist() == pytest.approx([6.6, 1.65])
    first = neuron.fire(0)  # threshold tau(1) = 4 units: channel 0 fires once, channel 1 not
    assert first.flatten().tolist() == [1.0, 0.0]
    assert neuron.u.flatten().tolist() == pytest.approx([2.6, 1.65])
    spikes = neuron(V)
    levels = _level(spikes, coding).flatten().tolist()
    assert levels == [math.floor(3.3 / 0.5), math.floor(3.3 / 2.0)]
    assert torch.equal(neuron.level(V).flatten(), torch.tensor([6.0, 1.0]))


def test_invalid_codings_raise() -> None:
    for kwargs in ({"kind": "burst"}, {"T": 0}, {"f_c": 0}, {"kind": "rate", "f_c": 2}):
        with pytest.raises(ValueError):
            SpikeCoding(**kwargs)
    with pytest.raises(ValueError):
        SpikingNeuron(torch.tensor([1.0, 0.0]), SpikeCoding())
