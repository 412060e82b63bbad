"""SUHD's quantiser inside the ANN, for fine-tuning with it in the loop (quantisation-aware).

A fused SUHD layer sends theta * clip(floor(V / theta), 0, L) (rounded with the half start),
L = f_c T (T + 1) / 2: the SNN is the ANN with quantised activations, and all it can lose is what
that quantisation loses. An ANN whose conv blocks end in `SUHDQuantiser` instead of ReLU computes
exactly what the fused engine will (same ops, same theta = lambda / L), so it can be fine-tuned
to make up for the quantisation, after which conversion loses nothing at its T and f_c.

Backward: the straight-through estimate of clip(V, 0, theta L), gradient 1 where the neuron can
represent V and 0 where it saturates or stays silent (as conversion-aware training does).
Thresholds are either kept as calibrated (a buffer outside the state dict, so the state dict
stays the ANN's) or learnt (`learn=True`, as QCFS / LSQ learn them): a parameter log(lambda),
positive by construction, with LSQ's gradient (level - V/theta inside, L when saturated, 0 when
silent, scaled by 1/sqrt(positions x L)). Either way the forward uses theta = lambda / L with
the lambda the model file will carry, so the fused engine computes what the network did.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import conv_blocks
from suhd_ros.snn.neurons import quantise, theta_tensor


class SUHDQuantiser(nn.Module):
    """theta * level, the value a fused SUHD layer passes on, with a straight-through gradient."""

    def __init__(self, lam: float | Tensor, coding: SpikeCoding, learn: bool = False) -> None:
        super().__init__()
        self.coding = coding
        lam = theta_tensor(lam)  # checked positive, in broadcast form
        if learn:
            self.log_lambda = nn.Parameter(lam.log())
        else:  # not in the state dict: a model file keeps the ANN's weights and lambda apart
            self.register_buffer("fixed_lambda", lam, persistent=False)

    @property
    def learnt(self) -> bool:
        return isinstance(getattr(self, "log_lambda", None), nn.Parameter)

    @property
    def lam(self) -> Tensor:
        """lambda = theta L in broadcast form; differentiable when learnt."""
        return self.log_lambda.exp() if self.learnt else self.fixed_lambda

    def forward(self, V: Tensor) -> Tensor:
        lam = self.lam
        theta = lam / self.coding.L  # as convert_to_snn computes it: the same float32 theta
        n = quantise(V.detach(), theta.detach(), self.coding)
        q = n * theta.detach()
        if not torch.is_grad_enabled() or not (V.requires_grad or lam.requires_grad):
            return q
        if lam.requires_grad:  # LSQ's step-size gradient scale
            scale = 1.0 / math.sqrt(V.numel() / theta.numel() * self.coding.L)
            theta = theta * scale + (theta * (1 - scale)).detach()
        u = (V / theta).clamp(0, self.coding.L)
        surrogate = theta * (u + (n - u).detach())
        return q + (surrogate - surrogate.detach())  # exactly q forward; STE / LSQ backward

    def extra_repr(self) -> str:
        return (f"T={self.coding.T}, f_c={self.coding.f_c}, half_start={self.coding.half_start}, "
                f"learnt={self.learnt}")


def insert_quantisers(ann: nn.Module, lambdas: dict[str, Tensor], coding: SpikeCoding,
                      learn: bool = False) -> nn.Module:
    """Replace the ReLU of every conv block by a SUHDQuantiser with theta = lambda / L, in
    place (what `convert_to_snn` gives each block's neurons); the Detect head stays analog.
    `learn`: the lambdas become parameters (log lambda) that train with the weights."""
    for name, block in conv_blocks(ann).items():
        if not isinstance(block.act, nn.ReLU | SUHDQuantiser):
            raise ValueError(f"{name}: activation {type(block.act).__name__} cannot become a "
                             "spiking neuron; quantisation-aware fine-tuning needs ReLU")
        if name not in lambdas:
            raise KeyError(f"no calibrated lambda for conv block {name}")
        device = block.conv.weight.device
        block.act = SUHDQuantiser(lambdas[name].to(device), coding, learn)
    return ann


def quantiser_lambdas(model: nn.Module) -> dict[str, Tensor]:
    """The lambda of every conv block's quantiser, on the CPU, shaped as calibration gives them
    ([C] per channel, a scalar per layer): what the model file carries."""
    lambdas = {}
    for name, block in conv_blocks(model).items():
        if isinstance(block.act, SUHDQuantiser):
            lam = block.act.lam.detach().cpu()
            lambdas[name] = lam.flatten() if lam.dim() == 3 else lam.clone()
    return lambdas


def ann_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The state dict without learnt thresholds: the ANN's weights, as a model file stores them."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith(".act.log_lambda")}


def remove_quantisers(model: nn.Module) -> nn.Module:
    """Back to ReLU in place: the float ANN whose weights a model file stores."""
    for block in conv_blocks(model).values():
        if isinstance(block.act, SUHDQuantiser):
            block.act = nn.ReLU()
    return model
