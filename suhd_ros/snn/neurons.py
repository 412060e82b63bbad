"""The SUHD neuron: accumulate, then fire with STDI thresholds, bursts and reset by subtraction.

Choices where the paper is silent:
- The membrane is kept in units of theta (u = V / theta), so thresholds are the integers tau(t)
  and reset by subtraction is exact in floating point; the spikes are those of V >= tau(t) theta.
- A burst is fired at once, s = min(floor(u / tau(t)), f_c) (eq. 12); the tests check on
  integer grids and random reals that the loop sends exactly clip(floor(u), 0, L).
- half_start adds theta / 2 to the membrane before firing ("membrane potential
  initialisation"); the quantiser then rounds half up instead of flooring.
"""

import torch
from torch import Tensor, nn

from suhd_ros.snn.coding import SpikeCoding


def theta_tensor(theta: float | Tensor) -> Tensor:
    """theta as a float tensor broadcasting over [..., C, H, W]: a scalar, or [C] -> [C, 1, 1]."""
    theta = torch.as_tensor(theta).detach().clone()
    if not theta.is_floating_point():
        theta = theta.float()
    if theta.dim() == 3 and theta.shape[1:] == (1, 1):  # already in broadcast form
        theta = theta.flatten()
    if theta.dim() > 1:
        raise ValueError(f"theta must be a scalar or [C], got shape {tuple(theta.shape)}")
    if not bool((theta > 0).all()):
        raise ValueError("theta must be > 0")
    return theta.view(-1, 1, 1) if theta.dim() == 1 else theta


def quantise(V: Tensor, theta: float | Tensor, coding: SpikeCoding,
             inplace: bool = False) -> Tensor:
    """The level a neuron sends: clip(floor(V / theta), 0, L) (round with half_start).

    inplace overwrites V (the fused engine's conv output) to save memory traffic.
    """
    u = V.div_(theta) if inplace else V / theta
    if coding.half_start:
        u.add_(0.5)
    return u.floor_().clamp_(0, coding.L)


def spikes_from_levels(n: Tensor, coding: SpikeCoding) -> Tensor:
    """Spikes per step [T, *n.shape] of an integer level n, by the same greedy rule as the neuron.

    Used by the fused engine for statistics: n <= L is sent as s(t) = min(n // tau(t), f_c),
    n -= s(t) tau(t), which is what `stdi_fire` sends for a membrane at level n.
    """
    spikes = []
    for tau_t in coding.tau:
        s = torch.clamp(torch.div(n, tau_t, rounding_mode="floor"), 0, coding.f_c)
        n = n - s * tau_t
        spikes.append(s)
    return torch.stack(spikes)


EXACT_FLOAT32_COUNT = 2**24  # float32 sums of integers are exact while they stay below this


def step_spike_counts(n: Tensor, coding: SpikeCoding) -> Tensor:
    """Spikes per sample and step [N, T] (float) of integer levels n [N, ...] in 0..L.

    `spikes_from_levels` summed over each sample, one step at a time, so the [T, ...] train is
    never built: a few elementwise passes and one sum per step, in any memory layout. Plain
    operators only, so the ONNX export computes it inside the graph. The sums are float32
    where a sample's count cannot reach 2**24 (then every partial sum is an exact integer),
    else float64. The last step sends what is left (tau = 1 there in both codings).
    """
    dims = tuple(range(1, n.dim()))
    exact = n[0].numel() * coding.f_c < EXACT_FLOAT32_COUNT
    dtype = torch.float32 if exact else torch.float64
    counts = []
    rest = n
    for tau_t in coding.tau[:-1]:
        s = torch.div(rest, tau_t).floor_().clamp_(max=coding.f_c)
        counts.append(s.sum(dims, dtype=dtype))
        rest = torch.sub(n, s, alpha=tau_t) if rest is n else rest.sub_(s, alpha=tau_t)
    counts.append(rest.sum(dims, dtype=dtype))
    return torch.stack(counts, dim=1)


def fire_step_(u: Tensor, tau_t: int, f_c: int, out: Tensor | None = None) -> Tensor:
    """One firing step in units of theta, the paper's eq. 12, in place: a burst of
    s = min(floor(u / tau(t)), f_c) spikes where u >= tau(t), then u -= s tau(t) (reset by
    subtraction; exact, since s tau(t) is an integer). Returns s (written into `out` if given).
    """
    s = torch.div(u, tau_t, out=out).floor_().clamp_(0, f_c)
    u.sub_(s, alpha=tau_t)
    return s


class SpikingNeuron(nn.Module):
    """A layer of SUHD neurons with explicit membrane state (temporal separation).

    The accumulation phase charges the whole input once (`charge`), then the firing phase runs
    `fire` for t = 1..T; `reset` forgets the membrane between frames. theta is a buffer: a
    scalar, or one value per channel of [N, C, H, W]. The membrane u is kept in units of theta.
    """

    def __init__(self, theta: float | Tensor, coding: SpikeCoding) -> None:
        super().__init__()
        self.coding = coding
        self.register_buffer("theta", theta_tensor(theta))
        self.u: Tensor | None = None

    def reset(self) -> None:
        """Forget the membrane; the next `charge` starts from 0 (or theta / 2)."""
        self.u = None

    def charge(self, V: Tensor) -> None:
        """Accumulation phase: add the integrated input current V (absolute units).

        Spikes are piecewise constant in V, so no gradient flows through the membrane.
        """
        u = V.detach() / self.theta
        if self.u is not None:
            self.u = self.u + u
        else:
            self.u = u.add_(0.5) if self.coding.half_start else u

    def fire(self, t: int, out: Tensor | None = None) -> Tensor:
        """Firing phase, step t (0-based): burst spikes at threshold tau(t) theta, then reset
        by subtraction (into `out` if given, e.g. one step of a train)."""
        if self.u is None:
            raise RuntimeError("charge the neuron before firing it")
        return fire_step_(self.u, self.coding.tau[t], self.coding.f_c, out)

    def forward(self, V: Tensor) -> Tensor:
        """Charge with V from rest, fire all T steps; spikes [T, *V.shape] (counts 0..f_c).

        The residual membrane stays in `u` until the next reset.
        """
        self.reset()
        self.charge(V)
        spikes = self.u.new_empty((self.coding.T, *self.u.shape))
        for t in range(self.coding.T):
            self.fire(t, out=spikes[t])
        return spikes

    def level(self, V: Tensor, inplace: bool = False) -> Tensor:
        """What `forward` sends, as a level n = sum_t tau(t) s(t), without the time loop (the
        fused engine); inplace overwrites V."""
        return quantise(V, self.theta, self.coding, inplace)


def stdi_fire(V: Tensor, theta: float | Tensor, coding: SpikeCoding) -> Tensor:
    """The literal firing loop on a potential V charged from rest: spikes [T, *V.shape].

    The functional form of `SpikingNeuron(theta, coding)(V)`, for callers that keep no state.
    """
    u = V.detach() / theta_tensor(theta).to(V.device, V.dtype)
    if coding.half_start:
        u.add_(0.5)
    spikes = u.new_empty((coding.T, *u.shape))
    for s, tau_t in zip(spikes, coding.tau, strict=True):
        fire_step_(u, tau_t, coding.f_c, out=s)
    return spikes
