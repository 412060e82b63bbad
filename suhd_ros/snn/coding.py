"""Spike codings: how a level n in 0..L is spread over T steps (SUHD's STDI, or rate coding)."""

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import Tensor

CodingKind = Literal["stdi", "rate"]
DEFAULT_T = 4  # the paper's setting: lossless conversion at 4 timesteps
DEFAULT_F_C = 4  # burst cap of STDI coding when neither the caller nor a model file says


@dataclass(frozen=True)
class SpikeCoding:
    """The coding shared by every layer of one SNN.

    kind: "stdi" weighs a spike fired at step t (1-based) by tau(t) = T - t + 1 and allows bursts
        of up to f_c spikes per step; "rate" weighs every spike by 1 and allows one spike per step.
    T: timesteps of the firing phase.
    f_c: compression scale = burst cap; None = DEFAULT_F_C for STDI, 1 for rate coding (which
        sends binary spikes, so any other value is refused).
    half_start: the membrane starts at theta / 2, so the quantiser rounds instead of flooring.
    """

    kind: CodingKind = "stdi"
    T: int = DEFAULT_T
    f_c: int | None = None
    half_start: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("stdi", "rate"):
            raise ValueError(f"kind must be 'stdi' or 'rate', got {self.kind!r}")
        if self.f_c is None:  # frozen: the one place the default is filled in
            object.__setattr__(self, "f_c", 1 if self.kind == "rate" else DEFAULT_F_C)
        if not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"T must be an integer >= 1, got {self.T!r}")
        if not isinstance(self.f_c, int) or self.f_c < 1:
            raise ValueError(f"f_c must be an integer >= 1, got {self.f_c!r}")
        if self.kind == "rate" and self.f_c != 1:
            raise ValueError(f"rate coding sends binary spikes, so f_c must be 1, got {self.f_c}")

    @cached_property  # read by every layer on every call
    def tau(self) -> tuple[int, ...]:
        """Weight of a spike fired at steps t = 1..T (index 0 is t = 1)."""
        if self.kind == "rate":
            return (1,) * self.T
        return tuple(self.T - t + 1 for t in range(1, self.T + 1))

    @cached_property
    def L(self) -> int:
        """Largest level one neuron can send in one frame: f_c * sum_t tau(t)."""
        return self.f_c * sum(self.tau)

    def tau_like(self, x: Tensor) -> Tensor:
        """tau as a tensor with x's dtype and device, shaped to weigh the leading T dim of x."""
        tau = torch.tensor(self.tau, dtype=x.dtype, device=x.device)
        return tau.view(self.T, *([1] * (x.dim() - 1)))

    def decode(self, x: Tensor, inplace: bool = False) -> Tensor:
        """sum_t tau(t) * x[t]: turns a train [T, ...] into the value it carries [...].

        inplace weighs x itself (a scratch tensor of the caller's) instead of a copy.
        """
        if x.shape[0] != self.T:
            raise ValueError(f"expected a train with T={self.T} steps first, got {tuple(x.shape)}")
        weighted = x.mul_(self.tau_like(x)) if inplace else self.tau_like(x) * x
        return weighted.sum(dim=0)
