"""The YOLOv5 trainer: CIoU, target assignment, augmentation, optimisation, checkpoints, CLI."""

import logging
import math
import shutil
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from suhd_ros.datasets import open_dataset
from suhd_ros.synthetic.export import export_coco, export_yolo
from suhd_ros.synthetic.scenes import CLASS_NAMES
from suhd_ros.tools.train import build_parser, main
from suhd_ros.training.augment import Augmentation
from suhd_ros.training.dataset import GeneratedScenes, collate, load_sample
from suhd_ros.training.loop import (
    BEST_NAME,
    CHECKPOINT_NAME,
    ResumeError,
    TrainConfig,
    _warn_fork_unsafe,
    epoch_indices,
    evaluate,
    make_model,
    make_optimizer,
    make_sources,
    resumed_config,
    train,
    training_batch,
    worker_count,
)
from suhd_ros.training.loss import YoloLoss, bbox_ciou
from suhd_ros.yolo.model_file import build_model, load_model_file

TINY = TrainConfig(
    img_size=64,
    width_multiple=0.125,
    batch_size=4,
    nominal_batch=4,
    train_images=8,
    val_images=4,
    epochs=2,
    warmup_min_iters=0,
    progress=False,
    workers=0,
)


@pytest.fixture(autouse=True)
def _dataset_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUHD_DATASET_CACHE", str(tmp_path / "dataset_cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ciou_hand_cases():
    box = torch.tensor([5.0, 5.0, 4.0, 2.0])
    assert bbox_ciou(box, box).item() == pytest.approx(1.0, abs=1e-6)
    half = torch.tensor([5.0, 5.0, 2.0, 1.0])  # same centre and aspect: IoU 1/4, no penalty
    assert bbox_ciou(half, box).item() == pytest.approx(0.25, abs=1e-6)
    apart = torch.tensor([8.0, 5.0, 4.0, 2.0])  # IoU 1/7; enclosing 7 x 2; centres 3 apart
    assert bbox_ciou(apart, box).item() == pytest.approx(1 / 7 - 9 / (49 + 4), abs=1e-6)


def test_targets_go_to_matching_anchors_in_the_cell_and_its_near_neighbours():
    anchors = torch.tensor([[1.0, 1.0], [2.0, 2.0], [10.0, 10.0]]).expand(3, 3, 2)
    detect = SimpleNamespace(nl=3, na=3, nc=2, anchors=anchors.clone())
    loss = YoloLoss(detect, img_size=64)
    preds = [torch.zeros(1, 3, n, n, 7) for n in (8, 4, 2)]
    # on the 8x8 level: centre (5.3, 5.7) cells, size 1.2 x 1.6 cells
    targets = torch.tensor([[0.0, 1.0, 5.3 / 8, 5.7 / 8, 1.2 / 8, 1.6 / 8]])
    level = loss.build_targets(preds, targets)[0]
    got = {
        (a, i, j, round(bx, 4), round(by, 4))
        for a, i, j, (bx, by) in zip(
            level.anchor.tolist(), level.gi.tolist(), level.gj.tolist(), level.box[:, :2].tolist(),
            strict=True,
        )
    }
    # anchors 1x1 and 2x2 are within ratio 4 of 1.2x1.6, 10x10 is not; own cell (5, 5), the left
    # neighbour (x frac 0.3 < 0.5) and the lower one (y frac 0.7 > 0.5)
    cells = {(5, 5, 0.3, 0.7), (4, 5, 1.3, 0.7), (5, 6, 0.3, -0.3)}
    assert got == {(a, *c) for a in (0, 1) for c in cells}
    assert level.cls.tolist() == [1] * 6 and (level.image == 0).all()
    torch.testing.assert_close(level.box[:, 2:], torch.tensor([[1.2, 1.6]]).expand(6, 2))


class _Rectangles:
    """Bright axis-aligned rectangles on a dark field: a box the eye can check after warping."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int):
        rng = np.random.default_rng(index)
        x1, y1 = rng.integers(4, 50, size=2)
        x2, y2 = x1 + rng.integers(8, 40), y1 + rng.integers(8, 40)
        image = np.full((96, 96, 3), 30, np.uint8)
        image[y1:y2, x1:x2] = 230
        return image, np.array([[x1, y1, x2, y2]], np.float32), np.array([0]), np.zeros(1, bool)


def test_augmented_boxes_follow_the_warped_and_flipped_pixels():
    aug = replace(Augmentation(), hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)  # greys survive HSV exactly
    checked = 0
    for index in range(len(_Rectangles())):
        sample = load_sample(_Rectangles(), index, 96, np.random.default_rng(index), aug)
        box = sample.boxes_xyxy
        if not len(box) or box.min() <= 0 or box.max() >= 96:
            continue  # dropped, or cut by the border
        bright = (sample.image > 172).all(axis=2)  # mostly rectangle, not background nor padding
        rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
        expected = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        np.testing.assert_allclose(box[0], expected, atol=1.0, err_msg=f"index {index}")
        checked += 1
    assert checked >= 20


def test_collate_normalises_centre_and_size():
    image = np.zeros((64, 32, 3), np.uint8)
    empty = np.zeros((0, 4), np.float32)
    box = np.array([[8.0, 16.0, 24.0, 48.0]], np.float32)
    samples = [
        SimpleNamespace(image=image, boxes_xyxy=empty, class_ids=np.zeros(0, np.int64),
                        ignore=np.zeros(0, bool)),
        SimpleNamespace(image=image, boxes_xyxy=np.concatenate((box, box + 1)),
                        class_ids=np.array([3, 1]), ignore=np.array([False, True])),
    ]
    images, targets = collate(samples)
    assert images.shape == (2, 3, 64, 32)
    # the ignored (crowd / difficult) box is no target
    torch.testing.assert_close(targets, torch.tensor([[1.0, 3.0, 0.5, 0.5, 0.5, 0.5]]))


def test_generator_epochs_see_fresh_scenes_in_a_fixed_order():
    source = GeneratedScenes("train", 64, 64)
    first, again, second = (epoch_indices(source, e, TINY) for e in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert sorted(first) == list(range(8)) and sorted(second) == list(range(8, 16))


def test_smaller_scenes_are_letterboxed_up_to_the_input_with_their_boxes():
    train_source, val_source = make_sources(replace(TINY, img_size=96, scene_size=64))
    for source in (train_source, val_source):
        image, boxes, _, _ = source[0]
        assert image.shape == (64, 64, 3)
        sample = load_sample(source, 0, 96)
        assert sample.image.shape == (96, 96, 3)
        np.testing.assert_allclose(sample.boxes_xyxy, boxes * 1.5, atol=1e-4)


def test_a_few_optimisation_steps_reduce_the_loss():
    config = replace(TINY, optimizer="adamw", lr0=0.002)
    model = make_model(config, CLASS_NAMES)
    optimizer = make_optimizer(model, config)
    loss_fn = YoloLoss(model.detect, config.img_size, config.gains())
    images, targets = training_batch(GeneratedScenes("train", 64, 64), range(4), 0, config)
    model.train()
    losses = []
    for _ in range(30):
        loss, _ = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_training_saves_a_model_file_and_resumes_to_the_same_weights(tmp_path):
    straight = train(replace(TINY, out_dir=str(tmp_path / "a")))
    assert straight.name == BEST_NAME
    model = build_model(load_model_file(straight))
    assert model.activation == "relu" and model.detect.nc == 10

    train(replace(TINY, out_dir=str(tmp_path / "b"), epochs=1))
    checkpoint = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["state"]["epoch"] == 0
    # the command line resumes with the saved settings, from a folder copied elsewhere too
    shutil.copytree(tmp_path / "b", tmp_path / "moved")
    threads = str(torch.get_num_threads())
    assert main(["--out-dir", str(tmp_path / "moved"), "--resume", "--epochs", "2",
                 "--threads", threads]) == 0
    a = _weights(tmp_path / "a" / CHECKPOINT_NAME)
    b = _weights(tmp_path / "moved" / CHECKPOINT_NAME)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    untrained = make_model(TINY, CLASS_NAMES).state_dict()
    assert any(not torch.equal(untrained[k], a[k]) for k in a)

    with pytest.raises(ResumeError, match="lr0"):
        train(replace(TINY, out_dir=str(tmp_path / "b"), resume=True, lr0=0.5))
    with pytest.raises(ResumeError, match="lr0"):
        resumed_config({"out_dir": str(tmp_path / "b"), "lr0": 0.5})
    assert resumed_config({"out_dir": str(tmp_path / "b"), "lr0": TINY.lr0, "epochs": 5}) == \
        replace(TINY, out_dir=str(tmp_path / "b"), resume=True, epochs=5)
    with pytest.raises(ResumeError, match="nothing to resume"):
        resumed_config({"out_dir": str(tmp_path / "none")})


def test_training_can_start_from_a_model_files_weights(tmp_path):
    first = build_model(load_model_file(train(replace(TINY, out_dir=str(tmp_path / "a")))))
    fresh = make_model(replace(TINY, seed=1), CLASS_NAMES)
    started = make_model(replace(TINY, seed=1, init_weights=str(tmp_path / "a" / BEST_NAME)),
                         CLASS_NAMES)
    for name, tensor in first.state_dict().items():
        torch.testing.assert_close(started.state_dict()[name], tensor, msg=name)
    assert any(not torch.equal(fresh.state_dict()[k], t) for k, t in first.state_dict().items())


def test_command_line_maps_to_the_config():
    args = build_parser().parse_args(
        ["--img-size", "64", "--width-multiple", "0.125", "--optimizer", "adamw", "--no-progress"]
    )
    config = TrainConfig(**vars(args))
    assert config == replace(
        TrainConfig(), img_size=64, width_multiple=0.125, optimizer="adamw", progress=False
    )


def test_command_line_trains_from_an_exported_coco_folder(tmp_path):
    """In this process, so no DataLoader workers: forking them from a test process that has
    loaded OpenVINO / ONNX Runtime (test_backends_*) made a later subprocess call segfault
    (test_datasets_train_e2e runs workers, in its own suhd-train process)."""
    for split in ("train", "val"):
        export_coco(tmp_path / "data", split, count=4, width=80, height=64, progress=False)
    argv = ["--data", str(tmp_path / "data"), "--out-dir", str(tmp_path / "run"), "--epochs", "1",
            "--img-size", "64", "--width-multiple", "0.125", "--batch-size", "4",
            "--no-progress", "--threads", "1", "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    checkpoint = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["config"]["data"] == str(tmp_path / "data")
    assert len(checkpoint["state"]["history"]) == 1
    assert load_model_file(tmp_path / "run" / BEST_NAME).metadata["input_size"] == [64, 64]


def test_an_image_damaged_after_indexing_is_replaced_by_the_next_and_reported(tmp_path, caplog):
    export_yolo(tmp_path, "val", count=3, width=64, height=64, progress=False)
    dataset = open_dataset(tmp_path, "val")
    damaged = dataset.records[1].path
    damaged.write_bytes(damaged.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        sample = load_sample(dataset, 1, 64)
        load_sample(dataset, 1, 64)
    np.testing.assert_allclose(sample.boxes_xyxy, dataset.records[2].boxes_xyxy)
    assert caplog.text.count(f"{damaged}: cannot read image: skipped") == 1


def test_no_worker_is_forked_from_a_process_that_loaded_onnx_runtime(monkeypatch, caplog):
    pytest.importorskip("onnxruntime")  # requirements/backends.txt
    for name in ("onnxruntime", "openvino"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert worker_count(TrainConfig(workers=2)) == 2
    import onnxruntime  # noqa: F401  (the real runtime, loaded into this process)

    _warn_fork_unsafe.cache_clear()  # warned once per process: maybe already, by another test
    with caplog.at_level(logging.WARNING, logger="suhd_ros.training"):
        assert worker_count(TrainConfig(workers=2)) == 0
        assert worker_count(TrainConfig(workers=0)) == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "onnxruntime" in warnings[0]


def test_validation_scores_as_yolov5_or_as_the_node_publishes():
    """val_multi_label (default, YOLOv5's val.py) ranks a box under every class above the
    score threshold; off, one class per box. On the default model the two differ."""
    from suhd_ros.paths import default_model_path

    model = build_model(load_model_file(default_model_path())).eval()
    config = replace(TINY, img_size=416, scene_size=320, val_images=12, batch_size=6)
    _, val_source = make_sources(config)
    multi = evaluate(model, val_source, config)
    single = evaluate(model, val_source, replace(config, val_multi_label=False))
    assert multi["map50_95"] != single["map50_95"] and multi["map50"] >= single["map50"] - 0.01
