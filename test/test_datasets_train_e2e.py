"""suhd-train on a YOLO dataset that is not ours (tiny scale): other names, .jpg and .png,
background images, one unreadable image, one bad label line -> a model file with its names ->
suhd-convert --data -> suhd-eval --data -> the detector node publishing those names."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import rclpy
import torch
from rclpy.qos import DurabilityPolicy, QoSProfile
from vision_msgs.msg import LabelInfo

from suhd_ros.detector import Detector
from suhd_ros.paths import default_model_path
from suhd_ros.ros.processes import start_node, stop_node
from suhd_ros.synthetic.scenes import SPLITS, SceneStyle, generate_scene
from suhd_ros.tools.convert import main as convert_main
from suhd_ros.tools.evaluate import main as evaluate_main
from suhd_ros.tools.train import main
from suhd_ros.training.loop import (
    BEST_NAME,
    RESULTS_NAME,
    TrainConfig,
    load_init_weights,
    make_model,
)
from suhd_ros.yolo.model_file import load_model_file

from ros_peer import Peer

torch.set_num_threads(1)  # the in-process tools (convert, eval) on a shared machine

SUBSET = {0: 0, 1: 1, 2: 2, 6: 3}  # circle, square, triangle, hexagon -> 0..3
NAMES = ["apple", "brick", "cone", "nut"]
SIZE = 96


def _subset_scenes(seeds, count):
    """Scenes whose every object is of the four classes, ids remapped."""
    style = SceneStyle(objects=(1, 3))
    found = []
    for seed in seeds:
        scene = generate_scene(seed, SIZE, SIZE, style)
        if len(scene.class_ids) and set(scene.class_ids.tolist()) <= SUBSET.keys():
            found.append((seed, scene))
            if len(found) == count:
                return found
    raise AssertionError("too few four-class scenes")


def _write_split(root, split, scenes):
    for k, (seed, scene) in enumerate(scenes):
        suffix = ".jpg" if k % 2 else ".png"  # jpg at high quality: boxes stay right
        image = root / "images" / split / f"{seed}{suffix}"
        image.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        label = root / "labels" / split / f"{seed}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for (x1, y1, x2, y2), c in zip(scene.boxes_xyxy.tolist(), scene.class_ids.tolist(),
                                       strict=True):
            lines.append(f"{SUBSET[c]} {(x1 + x2) / 2 / SIZE:.6f} {(y1 + y2) / 2 / SIZE:.6f} "
                         f"{(x2 - x1) / SIZE:.6f} {(y2 - y1) / SIZE:.6f}")
        label.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def their_dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("their")
    with pytest.MonkeyPatch.context() as patch:  # the index cache, for every tool of the module
        patch.setenv("SUHD_DATASET_CACHE", str(folder / "cache"))
        root = folder / "fruit"
        _write_split(root, "train", _subset_scenes(SPLITS["train"], 8))
        _write_split(root, "val", _subset_scenes(SPLITS["val"], 4))
        rng = np.random.default_rng(0)
        for k in range(2):  # background images: no label file
            noise = rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)
            cv2.imwrite(str(root / f"images/train/background{k}.jpg"), noise)
        (root / "images/train/broken.jpg").write_bytes(b"\xff\xd8 truncated")
        first_label = sorted((root / "labels/train").glob("*.txt"))[0]
        with first_label.open("a") as f:
            f.write("7 0.5 0.5 0.2 0.2\n")  # class 7 of 4
        (root / "data.yaml").write_text(
            "path: .\ntrain: images/train\nval: images/val\n"
            + "names:\n" + "".join(f"  {k}: {n}\n" for k, n in enumerate(NAMES)))
        yield root, first_label


@pytest.fixture(scope="module")
def trained(their_dataset, tmp_path_factory):
    """suhd-train as a user runs it, in its own process: its DataLoader worker is forked from
    a process holding only what suhd-train loads (forked from this test process, which has
    run DDS nodes and OpenVINO by now, a worker crashed it). (the run folder, its stderr)"""
    root, _ = their_dataset
    run = tmp_path_factory.mktemp("train") / "run"
    argv = ["--data", str(root), "--out-dir", str(run), "--epochs", "2", "--img-size", "64",
            "--batch-size", "4", "--init-weights", str(default_model_path()), "--workers", "1",
            "--no-progress", "--threads", "1"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "suhd_ros.tools.train", *argv],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return run, done.stderr


@pytest.fixture(scope="module")
def converted(their_dataset, trained):
    """suhd-convert --data: the trained model's SNN, calibrated on their train split."""
    root, _ = their_dataset
    snn = trained[0] / "snn.safetensors"
    assert convert_main([str(trained[0] / BEST_NAME), "--data", str(root), "--max-images", "6",
                         "-o", str(snn), "--quiet"]) == 0
    return snn


def test_train_on_their_yolo_dataset_from_the_default_model(their_dataset, trained):
    root, bad_label = their_dataset
    run, logged = trained
    lines = len(bad_label.read_text().splitlines())
    assert f"{bad_label}:{lines}: class out of range" in logged
    assert "broken.jpg: unreadable image" in logged
    assert "skipped 2 bad records: 1 class out of range, 1 unreadable image" in logged
    assert "re-initialised for 4 classes" in logged

    model_file = load_model_file(run / BEST_NAME)
    assert model_file.metadata["names"] == NAMES
    assert model_file.metadata["input_size"] == [64, 64]
    history = json.loads((run / RESULTS_NAME).read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(np.isfinite(h["box_loss"]) and h["seconds"] > 0 for h in history)
    detector = Detector(run / BEST_NAME, device="cpu", engine="ann")
    assert detector.names == NAMES
    frame = cv2.imread(str(next((root / "images/val").glob("*.png"))))[:, :, ::-1]
    assert len(detector.detect([np.ascontiguousarray(frame)], score_threshold=0.0)) == 1


def test_convert_and_evaluate_on_their_data(their_dataset, converted, tmp_path, capsys):
    root, _ = their_dataset
    snn = load_model_file(converted)
    assert snn.metadata["names"] == NAMES and snn.lambdas
    out = tmp_path / "eval"
    assert evaluate_main(["--model", str(converted), "--data", str(root), "--quick", "--out",
                          str(out)]) == 0
    assert "warning" not in capsys.readouterr().err  # the model's names are the dataset's
    results = json.loads((out / "results.json").read_text())
    setting = f"STDI T={snn.metadata['snn']['T']} f_c={snn.metadata['snn']['f_c']}"
    assert [r["label"] for r in results["yolov5_val"]] == ["ANN", setting]
    for row in results["yolov5_val"] + results["single_label"]:
        assert 0.0 <= row["map50_95"] <= row["map50"] <= 1.0
        assert set(row["per_class"]) <= set(NAMES) and row["per_class"]
    report = (out / "conversion.md").read_text()
    assert "AP per class" in report and "[val]`: 4 images" in report
    for name in results["yolov5_val"][0]["per_class"]:
        assert f"| {name} | " in report


def test_the_node_publishes_their_names(converted, tmp_path):
    process = start_node("detector_node", tmp_path / "node.log", "/their",
                         ["device:=cpu", f"model_path:={converted}"],
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    rclpy.init()
    peer = Peer("their_names_peer")
    try:
        labels: list[LabelInfo] = []
        peer.node.create_subscription(
            LabelInfo, "/their/label_info", labels.append,
            QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        peer.spin_until(lambda: labels, timeout_s=60.0)
        assert [c.class_name for c in labels[0].class_map] == NAMES
        assert [c.class_id for c in labels[0].class_map] == list(range(len(NAMES)))
    finally:
        peer.close()
        rclpy.shutdown()
        stop_node(process)


def test_default_weights_load_into_a_four_class_network_except_the_head():
    default = load_model_file(default_model_path()).state_dict
    config = TrainConfig(size="n")
    fresh = make_model(config, NAMES).state_dict()
    model = make_model(config, NAMES)
    load_init_weights(model, default)
    loaded = model.state_dict()
    head = [k for k in loaded if loaded[k].shape != default[k].shape]
    assert head and all(".m." in k for k in head)  # Detect's per-level output convolutions
    for name, tensor in loaded.items():
        expected = fresh[name] if name in head else default[name]
        torch.testing.assert_close(tensor, expected, msg=name)


def test_bad_data_is_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SUHD_DATASET_CACHE", str(tmp_path / "cache"))
    assert main(["--data", str(tmp_path), "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no dataset layout recognised" in err[0]
    assert main(["--device", "gpu7", "--out-dir", str(tmp_path / "run")]) == 2
    assert "device must be auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert not (tmp_path / "run" / BEST_NAME).exists()
