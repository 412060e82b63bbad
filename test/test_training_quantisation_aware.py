"""suhd-train --quantise: fine-tuned through SUHD's quantiser, written as an SNN model file that
the Detector runs exactly as the fine-tuned network computed, with no suhd-convert step."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from suhd_ros.detector import Detector
from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.convert import conv_blocks, fold_batchnorm
from suhd_ros.snn.quantisation_aware import SUHDQuantiser, insert_quantisers
from suhd_ros.tools.train import main
from suhd_ros.training.loop import BEST_NAME, CHECKPOINT_NAME, TrainConfig, train
from suhd_ros.training.quantisation_aware import (
    distillation_loss,
    feature_distillation_loss,
)
from suhd_ros.yolo.model_file import build_model, load_model_file, sha256_file
from suhd_ros.yolo.preprocess import network_input

TINY = TrainConfig(img_size=64, width_multiple=0.125, batch_size=4, nominal_batch=4,
                   train_images=8, val_images=4, epochs=1, warmup_min_iters=0,
                   progress=False, workers=0, quantise="2,4", calibration_images=8)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def float_model(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("float")
    return train(replace(TINY, out_dir=str(out), quantise=None))


@pytest.mark.parametrize("threshold_lr", [0.0, 0.05])
def test_the_file_runs_in_the_detector_as_the_fine_tuned_network_computed(
        float_model, tmp_path, threshold_lr: float) -> None:
    config = replace(TINY, out_dir=str(tmp_path), init_weights=str(float_model),
                     threshold_lr=threshold_lr)
    best = train(config)
    model_file = load_model_file(best)
    snn_meta = model_file.metadata["snn"]
    assert (snn_meta["T"], snn_meta["f_c"], snn_meta["half_start"]) == (2, 4, True)
    assert snn_meta["quantisation_aware"] is True and model_file.lambdas
    assert snn_meta["learnt_thresholds"] is (threshold_lr > 0)
    assert model_file.metadata["source_sha256"] == sha256_file(float_model)  # where it came from
    calibrated = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["lambdas"]
    moved = [not torch.equal(calibrated[k], v) for k, v in model_file.lambdas.items()]
    assert all(moved) if threshold_lr > 0 else not any(moved)
    coding = SpikeCoding("stdi", 2, 4, half_start=True)
    fine_tuned = insert_quantisers(fold_batchnorm(build_model(model_file)), model_file.lambdas,
                                   coding).eval()
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    x, _ = network_input([image], (64, 64))
    detector = Detector(best, device="cpu")
    with torch.no_grad():
        expected = fine_tuned(x)
        got = detector.model(x)
        reference = Detector(best, device="cpu", engine="reference").model(x)
    for e, g in zip(expected[1], got[1], strict=True):
        assert torch.equal(e, g)
    torch.testing.assert_close(reference[0], got[0], rtol=1e-4, atol=1e-3)


def test_weights_change_and_resume_keeps_the_calibrated_thresholds(float_model, tmp_path):
    config = replace(TINY, out_dir=str(tmp_path), init_weights=str(float_model))
    first = load_model_file(train(config))
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    train(replace(config, epochs=2, resume=True))
    resumed = load_model_file(tmp_path / BEST_NAME)
    for name, lam in first.lambdas.items():
        assert torch.equal(resumed.lambdas[name], lam)
        assert torch.equal(saved["lambdas"][name], lam)
    start = load_model_file(float_model).state_dict
    assert any(not torch.equal(start[k], v) for k, v in first.state_dict.items())


def test_frozen_batchnorm_keeps_the_statistics_the_thresholds_were_calibrated_on(
        float_model, tmp_path) -> None:
    config = replace(TINY, out_dir=str(tmp_path), init_weights=str(float_model),
                     freeze_bn=True)
    tuned = load_model_file(train(config)).state_dict
    start = load_model_file(float_model).state_dict
    statistics = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(tuned[k], start[k]) for k in statistics)
    affine = [k for k in start if ".bn." in k and k.endswith("weight")]
    assert any(not torch.equal(tuned[k], start[k]) for k in affine)


def test_learnt_thresholds_resume_as_learnt_and_get_their_own_learning_rate(
        float_model, tmp_path) -> None:
    config = replace(TINY, out_dir=str(tmp_path), init_weights=str(float_model),
                     threshold_lr=0.05, lr0=1e-3)
    train(config)
    first = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["model"]
    train(replace(config, epochs=2, resume=True))  # a strict load: the log lambdas must fit
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    thresholds = [g for g in saved["optimizer"]["param_groups"] if "lr_scale" in g]
    assert len(thresholds) == 1 and thresholds[0]["lr_scale"] == pytest.approx(50.0)
    learnt = [k for k in first if k.endswith("log_lambda")]
    assert learnt and any(not torch.equal(saved["model"][k], first[k]) for k in learnt)


def test_distillation_is_zero_on_the_teachers_outputs_and_pulls_towards_them() -> None:
    generator = torch.Generator().manual_seed(0)
    teacher = [torch.randn(2, 3, 4, 4, 8, generator=generator) for _ in range(2)]
    assert float(distillation_loss(teacher, teacher)) == 0.0
    student = [(t + torch.randn(t.shape, generator=generator)).requires_grad_() for t in teacher]
    loss = distillation_loss(student, teacher)
    loss.backward()
    with torch.no_grad():
        closer = [s - 0.01 * s.grad for s in student]
    assert 0.0 < float(distillation_loss(closer, teacher)) < float(loss.detach())
    # box and class outputs count only where the teacher sees an object
    silent = [t.clone() for t in teacher]
    for t in silent:
        t[..., 4] = -30.0
    moved = [t.clone() for t in silent]
    for m in moved:
        m[..., :4] += 1.0
    assert float(distillation_loss(moved, silent)) < 1e-6


def test_distillation_changes_what_the_run_learns(float_model, tmp_path) -> None:
    config = replace(TINY, init_weights=str(float_model), freeze_bn=True)
    plain = load_model_file(train(replace(config, out_dir=str(tmp_path / "plain"))))
    distilled = load_model_file(train(replace(config, out_dir=str(tmp_path / "kd"), distil=1.0)))
    assert any(not torch.equal(plain.state_dict[k], v) for k, v in distilled.state_dict.items())


def test_feature_distillation_is_the_relative_error_per_block_and_pulls_towards_it() -> None:
    generator = torch.Generator().manual_seed(0)
    teacher = {"a": torch.rand(2, 4, 6, 6, generator=generator),
               "b": 100 * torch.rand(2, 8, 3, 3, generator=generator)}
    assert float(feature_distillation_loss(teacher, teacher)) == 0.0
    student = {k: (t * 1.1).requires_grad_() for k, t in teacher.items()}
    loss = feature_distillation_loss(student, teacher)
    # each block: 0.1^2 of its own mean square, whatever its scale; mean over blocks, x batch 2
    assert float(loss.detach()) == pytest.approx(2 * 0.01, rel=1e-4)
    loss.backward()
    with torch.no_grad():
        closer = {k: s - 0.1 * s.grad for k, s in student.items()}
    assert 0.0 < float(feature_distillation_loss(closer, teacher)) < float(loss.detach())
    with pytest.raises(ValueError, match="same conv blocks"):
        feature_distillation_loss({"a": student["a"]}, teacher)


def test_feature_distillation_compares_each_quantiser_with_the_float_activation(
        float_model, tmp_path) -> None:
    from suhd_ros.training.loop import _distillation, _start, make_sources

    config = replace(TINY, out_dir=str(tmp_path), init_weights=str(float_model),
                     distil_features=1.0)
    run, _ = _start(config, make_sources(config)[0], tmp_path)
    x = torch.rand(2, 3, 64, 64)
    run.model.eval()
    predictions = run.model(x)[1]
    student, teacher = run.features
    with torch.no_grad():
        target = run.teacher(x)[1]
    assert student.outputs.keys() == teacher.outputs.keys() == run.lambdas.keys()
    with torch.no_grad():
        quantised = dict(student.outputs)
        plain = {k: v.clone() for k, v in teacher.outputs.items()}
        loss = _distillation(run, predictions, target, config)
    expected = feature_distillation_loss(quantised, plain).detach()
    assert float(loss.detach()) == pytest.approx(float(expected))
    assert float(loss.detach()) > 0 and not student.outputs and not teacher.outputs
    for name, block in conv_blocks(run.model).items():  # after the quantiser: theta multiples
        levels = quantised[name] / (block.act.lam / block.act.coding.L)
        torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-3)
    run.ema.module(x)  # the EMA copy was made before the hooks: it records nothing
    assert not student.outputs


def test_feature_distillation_changes_what_the_run_learns(float_model, tmp_path) -> None:
    config = replace(TINY, init_weights=str(float_model), freeze_bn=True)
    plain = load_model_file(train(replace(config, out_dir=str(tmp_path / "plain"))))
    distilled = load_model_file(train(replace(config, out_dir=str(tmp_path / "fkd"),
                                              distil_features=10.0)))
    assert any(not torch.equal(plain.state_dict[k], v) for k, v in distilled.state_dict.items())


def test_the_network_and_its_ema_train_through_the_quantisers(float_model, tmp_path) -> None:
    from suhd_ros.training.loop import _start, make_sources

    config = replace(TINY, out_dir=str(tmp_path), init_weights=str(float_model))
    run, _ = _start(config, make_sources(config)[0], tmp_path)
    quantisers = [m for m in run.model.modules() if isinstance(m, SUHDQuantiser)]
    assert len(quantisers) == len(run.lambdas) > 0
    assert sum(isinstance(m, SUHDQuantiser) for m in run.ema.module.modules()) == len(quantisers)


@pytest.mark.parametrize("spec", ["4", "4,x", "0,4", "4,4,4"])
def test_a_bad_quantise_setting_is_one_line(spec: str, tmp_path, capsys) -> None:
    status = main(["--quantise", spec, "--img-size", "64", "--train-images", "4", "--epochs",
                   "1", "--no-progress", "--workers", "0", "--out-dir", str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("suhd-train: error: --quantise") and err.count("\n") == 1, err
