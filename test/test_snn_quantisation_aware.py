"""The ANN with SUHD quantisers computes what the converted SNN computes; gradients pass."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import calibrate_thresholds, convert_to_snn, fold_batchnorm
from suhd_ros.snn.layers import set_engine
from suhd_ros.snn.quantisation_aware import (
    SUHDQuantiser,
    ann_state_dict,
    insert_quantisers,
    quantiser_lambdas,
    remove_quantisers,
)
from suhd_ros.yolo.config import yolov5_description
from suhd_ros.yolo.model import YOLOv5

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def calibrated() -> tuple[YOLOv5, dict[str, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    description = yolov5_description("n", 3)
    description["width_multiple"] = 0.125
    ann = YOLOv5(description).eval()
    for module in ann.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.rand(2, 3, 64, 96)
    lambdas = calibrate_thresholds(ann, [x], percentile=99.9, per_channel=True, progress=False)
    return ann, lambdas, x


@pytest.mark.parametrize(("T", "f_c", "half_start", "learn"),
                         [(4, 4, True, False), (4, 8, False, False), (2, 4, True, False),
                          (1, 4, False, False), (4, 4, True, True), (2, 4, False, True)])
def test_quantised_ann_equals_the_fused_snn_and_the_reference_agrees(
        calibrated: tuple, T: int, f_c: int, half_start: bool, learn: bool) -> None:
    ann, lambdas, x = calibrated
    coding = SpikeCoding("stdi", T, f_c, half_start)
    quantised = insert_quantisers(fold_batchnorm(copy.deepcopy(ann)), lambdas, coding, learn)
    quantised.eval()
    if learn:  # thresholds moved by training: the SNN gets the lambdas the network used
        generator = torch.Generator().manual_seed(T)
        with torch.no_grad():
            for quantiser in quantised.modules():
                if isinstance(quantiser, SUHDQuantiser):
                    step = torch.randn(quantiser.log_lambda.shape, generator=generator)
                    quantiser.log_lambda.add_(step * 0.1)
        lambdas = quantiser_lambdas(quantised)
    snn = convert_to_snn(ann, lambdas, coding, engine="fused", example_size=(64, 96))
    with torch.no_grad():
        q_boxes, q_raw = quantised(x)
        s_boxes, s_raw = snn(x)
        r_boxes, _ = set_engine(copy.deepcopy(snn), "reference")(x)
    for q, s in zip(q_raw, s_raw, strict=True):
        assert torch.equal(q, s)
    assert torch.equal(q_boxes, s_boxes)
    torch.testing.assert_close(r_boxes, s_boxes, rtol=1e-4, atol=1e-3)
    float_boxes, _ = ann(x)
    assert not torch.equal(float_boxes, q_boxes)  # the quantisers do quantise


def test_straight_through_gradient_is_one_where_the_neuron_can_represent_v() -> None:
    coding = SpikeCoding("stdi", 2, 1, half_start=True)  # L = 3
    quantiser = SUHDQuantiser(torch.tensor(1.5), coding)  # theta 0.5
    V = torch.tensor([-1.0, 0.1, 0.3, 0.74, 1.2, 1.6, 3.0], requires_grad=True)
    out = quantiser(V)
    torch.testing.assert_close(out.detach(), torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.5, 1.5]))
    out.sum().backward()
    assert V.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_learnt_threshold_gets_lsq_gradient_and_stays_positive() -> None:
    coding = SpikeCoding("stdi", 2, 1, half_start=True)  # L = 3
    quantiser = SUHDQuantiser(torch.tensor(1.5), coding, learn=True)  # theta 0.5
    V = torch.tensor([-1.0, 0.1, 0.3, 0.74, 1.2, 1.6, 3.0], requires_grad=True)
    out = quantiser(V)
    torch.testing.assert_close(out.detach(), torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.5, 1.5]))
    out.sum().backward()
    assert V.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    # d out / d theta: level - V / theta inside, L saturated, 0 silent; LSQ scale 1/sqrt(7 * 3)
    u = torch.tensor([0.2, 0.6, 1.48, 2.4])
    dtheta = float((u.add(0.5).floor() - u).sum() + 2 * 3) / math.sqrt(7 * 3)
    # the parameter is log lambda: d/d log lambda = theta * d/d theta
    torch.testing.assert_close(quantiser.log_lambda.grad, torch.tensor(0.5 * dtheta))
    with torch.no_grad():
        quantiser.log_lambda -= 100.0
    assert float(quantiser.lam.detach()) > 0


def test_insert_and_remove_keep_the_state_dict_and_refuse_silu(calibrated: tuple) -> None:
    ann, lambdas, _ = calibrated
    model = copy.deepcopy(ann)
    keys = list(model.state_dict())
    insert_quantisers(model, lambdas, SpikeCoding())
    assert sum(isinstance(m, SUHDQuantiser) for m in model.modules()) == len(lambdas)
    assert list(model.state_dict()) == keys  # the model file stores lambdas on their own
    assert all(torch.equal(lam, lambdas[name]) for name, lam in quantiser_lambdas(model).items())
    insert_quantisers(model, lambdas, SpikeCoding(), learn=True)
    assert len(model.state_dict()) == len(keys) + len(lambdas)  # log lambda, for the EMA
    assert list(ann_state_dict(model)) == keys
    remove_quantisers(model)
    assert list(model.state_dict()) == keys
    silu = YOLOv5(yolov5_description("n", 3), activation="silu")
    with pytest.raises(ValueError, match="SiLU"):
        insert_quantisers(silu, lambdas, SpikeCoding())
