"""SUHD's quantiser inside the ANN, for fine-tuning with it in the loop (quantisation-aware).

A fused SUHD layer sends theta * clip(floor(V / theta), 0, L) (rounded with the half start),
L = f_c T (T + 1) / 2: the SNN is the ANN with quantised activations, and all it can lose is what
that quantisation loses. An ANN whose conv blocks end in `SUHDQuantiser` instead of ReLU computes
exactly what the fused engine will (same ops, same theta = lambda / L), so it can be fine-tuned
to make up for the quantisation, after which conversion loses nothing at its T and f_c.

Backward: the straight-through estimate of clip(V, 0, theta L), gradient 1 where the neuron can
represent V and 0 where it saturates or stays silent (as conversion-aware training does).
The thresholds stay as calibrated (buffers, not parameters), so the model file of a fine-tuned
network is the ANN's weights with the lambdas it was fine-tuned with.
"""

from __future__ import annotations

from torch import Tensor, nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import conv_blocks
from suhd_ros.snn.neurons import quantise, theta_tensor


class SUHDQuantiser(nn.Module):
    """theta * level, the value a fused SUHD layer passes on, with a straight-through gradient."""

    def __init__(self, theta: float | Tensor, coding: SpikeCoding) -> None:
        super().__init__()
        self.coding = coding
        # not in the state dict: a model file keeps the ANN's weights and lambda = theta L apart
        self.register_buffer("theta", theta_tensor(theta), persistent=False)

    def forward(self, V: Tensor) -> Tensor:
        q = quantise(V, self.theta, self.coding) * self.theta
        if not V.requires_grad:
            return q
        clipped = V.clamp(min=0).minimum(self.theta * self.coding.L)
        return clipped + (q - clipped).detach()

    def extra_repr(self) -> str:
        return f"T={self.coding.T}, f_c={self.coding.f_c}, half_start={self.coding.half_start}"


def insert_quantisers(ann: nn.Module, lambdas: dict[str, Tensor], coding: SpikeCoding) -> nn.Module:
    """Replace the ReLU of every conv block by a SUHDQuantiser with theta = lambda / L, in
    place (what `convert_to_snn` gives each block's neurons); the Detect head stays analog."""
    for name, block in conv_blocks(ann).items():
        if not isinstance(block.act, nn.ReLU | SUHDQuantiser):
            raise ValueError(f"{name}: activation {type(block.act).__name__} cannot become a "
                             "spiking neuron; quantisation-aware fine-tuning needs ReLU")
        if name not in lambdas:
            raise KeyError(f"no calibrated lambda for conv block {name}")
        device = block.conv.weight.device
        block.act = SUHDQuantiser(lambdas[name].to(device) / coding.L, coding)
    return ann


def remove_quantisers(model: nn.Module) -> nn.Module:
    """Back to ReLU in place: the float ANN whose weights a model file stores."""
    for block in conv_blocks(model).values():
        if isinstance(block.act, SUHDQuantiser):
            block.act = nn.ReLU()
    return model
