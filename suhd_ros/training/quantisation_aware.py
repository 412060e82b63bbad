"""Quantisation-aware fine-tuning: the training loop's side of snn/quantisation_aware.py.

`suhd-train --quantise T,F_C` calibrates lambda per conv block on training images (as
suhd-convert does), puts the SUHD quantiser in place of each ReLU, and trains through it. What
it writes is an SNN model file: the ANN's weights with those lambdas and the coding, so the
Detector runs it as it was fine-tuned, with no suhd-convert step.

Options that make the fine-tuning recover quantisation error rather than add SGD noise
(measured on the benchmark, T=4 f_c=4: the detection loss alone was no better than post-training
conversion): BN statistics frozen at those the thresholds were calibrated on, distillation from
the float network's outputs or from its activation at each quantiser (`--distil-features`), and
(optionally) learnt thresholds. Measured on the 200 validation scenes at T=4 f_c=4, none of them
beat post-training conversion with the thresholds this module calibrates by more than the spread
between calibration sets (0.3 % of mAP@0.5:0.95).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from suhd_ros.datasets import DatasetError
from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import calibrate_thresholds, conv_blocks
from suhd_ros.snn.quantisation_aware import insert_quantisers
from suhd_ros.training.dataset import SceneSource, collate, load_sample

CALIBRATION_BATCH = 8


def quantiser_coding(spec: str, half_start: bool) -> SpikeCoding:
    """"T,F_C" -> the STDI coding the fine-tuned network quantises with."""
    try:
        T, f_c = (int(v) for v in spec.split(","))
        return SpikeCoding("stdi", T, f_c, half_start)
    except ValueError as e:
        raise DatasetError(f"--quantise must be T,F_C with positive integers (e.g. 4,4), "
                           f"got {spec!r}: {e}") from None


def calibration_batches(source: SceneSource, img_size: int, count: int):
    """The first `count` images of the training split, letterboxed as the network sees them."""
    indices = range(min(count, len(source)))
    for start in range(0, len(indices), CALIBRATION_BATCH):
        chunk = indices[start:start + CALIBRATION_BATCH]
        yield collate([load_sample(source, i, img_size) for i in chunk])[0]


def quantise_model(model: nn.Module, coding: SpikeCoding, lambdas: dict[str, Tensor] | None,
                   calibration: Sequence[Tensor] | None, percentile: float,
                   per_channel: bool, learn: bool = False) -> dict[str, Tensor]:
    """Calibrate (unless `lambdas` are given, e.g. on resume) and insert the quantisers into
    `model` in place (`learn`: with thresholds that train); returns the calibrated lambdas on
    the CPU (learnt ones are in the state dict: `quantiser_lambdas` reads them)."""
    if lambdas is None:
        device = next(model.parameters()).device
        was_training = model.training
        lambdas = calibrate_thresholds(model.eval(), (x.to(device) for x in calibration or ()),
                                       percentile, per_channel, progress=False)
        model.train(was_training)
    lambdas = {name: lam.detach().cpu() for name, lam in lambdas.items()}
    insert_quantisers(model, lambdas, coding, learn)
    return lambdas


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    """BatchNorm layers to eval mode (running statistics used, not updated; affine weights still
    train): fine-tuning then sees the normalisation the thresholds were calibrated on and that
    conversion folds into the convolutions, not each batch's own."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def distillation_loss(student: Sequence[Tensor], teacher: Sequence[Tensor]) -> Tensor:
    """Squared difference of the quantised network's outputs from the float network's, summed
    over the batch (YOLOv5 scales its loss by the batch too), on raw head maps
    [N, na, ny, nx, 5 + nc] after the sigmoid the decoding applies. Objectness counts
    everywhere; box and class outputs where the float network sees an object (weighted by its
    objectness), since elsewhere they are never read. A dense target from the network being
    made up for: it asks the quantised one to compute what the float one did, image by image."""
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher, strict=True):
        s, t = s.float().sigmoid(), t.float().sigmoid()
        squared = (s - t).square()
        objectness = t[..., 4:5]
        total = total + squared[..., 4].sum() + (squared[..., :4] * objectness).sum()
        total = total + (squared[..., 5:] * objectness).sum()
    return total


def float_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of the float network (before quantisers go in) for `distillation_loss`."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class BlockOutputs:
    """The output of every conv block of a network on its last forward pass (forward hooks):
    after the quantiser in the fine-tuned network, after the ReLU in the float one."""

    def __init__(self, model: nn.Module) -> None:
        self.outputs: dict[str, Tensor] = {}
        for name, block in conv_blocks(model).items():
            block.register_forward_hook(partial(self._keep, name))

    def _keep(self, name: str, _module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        self.outputs[name] = output


def feature_distillation_loss(student: dict[str, Tensor], teacher: dict[str, Tensor]) -> Tensor:
    """Mean over conv blocks of the quantised output's squared error from the float network's
    activation at the same place, each relative to that activation's mean square (so thin deep
    layers count as much as wide early ones), times the batch size as the other losses are
    summed over it. This is the quantisation error itself, layer by layer, where the head-output
    distillation sees it only after it has propagated."""
    if student.keys() != teacher.keys() or not student:
        raise ValueError("feature distillation needs the same conv blocks in both networks")
    terms = []
    for name, s in student.items():
        t = teacher[name].float()
        terms.append((s.float() - t).square().mean() / t.square().mean().clamp(min=1e-12))
    return torch.stack(terms).mean() * next(iter(student.values())).shape[0]
