"""suhd-train --init-weights with Ultralytics YOLOv5 checkpoints (test/ultralytics_standin.py):
read by the safe importer, the network taken from the file, a SiLU network trained as ReLU, the
head re-initialised for another class count."""

import logging
import zipfile

import pytest
import torch
from torch import nn

from suhd_ros.synthetic.scenes import CLASS_NAMES
from suhd_ros.tools.train import main
from suhd_ros.training.loop import TrainConfig, make_model
from suhd_ros.yolo.checkpoint import import_ultralytics_checkpoint
from suhd_ros.yolo.model_file import load_model_file

import ultralytics_standin as standin

NAMES = ["bolt", "nut", "washer", "gear"]
HEAD = ("model.24.m.0", "model.24.m.1", "model.24.m.2")  # Detect's per-level output convs


@pytest.fixture(scope="module")
def silu_checkpoint(tmp_path_factory):
    """An 80-class SiLU YOLOv5n as public weight files are, with BN eps 1e-5 (not ours)."""
    path = tmp_path_factory.mktemp("ultralytics") / "yolov5n_silu.pt"
    return standin.save_checkpoint(path, standin.build(nc=80, activation=nn.SiLU, bn_eps=1e-5))


def test_a_silu_checkpoint_starts_a_relu_network_for_other_classes(silu_checkpoint, caplog):
    imported = import_ultralytics_checkpoint(silu_checkpoint).state_dict
    with caplog.at_level(logging.INFO, logger="suhd_ros.training"):
        model = make_model(TrainConfig(init_weights=str(silu_checkpoint)), NAMES)
    assert model.activation == "relu" and model.names == NAMES and model.detect.nc == 4
    assert not any(isinstance(m, nn.SiLU) for m in model.modules())
    assert any(isinstance(m, nn.ReLU) for m in model.modules())
    # the network is the checkpoint's: its multiples and BN eps, no --size given
    assert (model.description["depth_multiple"], model.description["width_multiple"]) == (
        0.33, 0.25)
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}
    state = model.state_dict()
    for key, tensor in state.items():
        if key.startswith(HEAD):
            assert tensor.shape[0] == 3 * (5 + 4) and imported[key].shape[0] == 3 * 85
        else:
            torch.testing.assert_close(tensor, imported[key], msg=key)
    messages = [r.getMessage() for r in caplog.records]
    swapped = [m for m in messages if "SILU activations are trained as RELU" in m]
    loaded = [m for m in messages if "tensors loaded from" in m]
    assert len(swapped) == 1 and len(loaded) == 1
    assert f"{len(state) - 6} of {len(state)} tensors" in loaded[0]
    assert loaded[0].endswith("re-initialised for 4 classes: " + ", ".join(HEAD))


def test_suhd_train_fine_tunes_a_silu_checkpoint_into_a_relu_model_file(silu_checkpoint,
                                                                        tmp_path):
    run = tmp_path / "run"
    assert main(["--init-weights", str(silu_checkpoint), "--out-dir", str(run),
                 "--img-size", "64", "--epochs", "1", "--train-images", "4", "--val-images", "4",
                 "--batch-size", "4", "--nominal-batch", "4", "--warmup-min-iters", "0",
                 "--workers", "0", "--threads", "1", "--no-progress"]) == 0
    metadata = load_model_file(run / "best.safetensors").metadata
    assert metadata["activation"] == "relu" and metadata["names"] == list(CLASS_NAMES)
    assert metadata["description"]["bn_eps"] == 1e-5 and metadata["description"]["nc"] == 10


def test_a_checkpoint_of_another_network_or_no_checkpoint_is_one_line(silu_checkpoint,
                                                                      tmp_path, capsys):
    not_a_checkpoint = tmp_path / "notes.pt"
    with zipfile.ZipFile(not_a_checkpoint, "w") as archive:
        archive.writestr("notes.txt", "hello")
    yolov5_v4 = standin.build(nc=3)  # its description names a module this project lacks
    yolov5_v4.yaml = {**yolov5_v4.yaml, "backbone": [[-1, 1, "Focus", [64, 3]],
                                                     *yolov5_v4.yaml["backbone"][1:]]}
    old_network = standin.save_checkpoint(tmp_path / "v4.pt", yolov5_v4)
    cases = [(["--size", "s"], silu_checkpoint, "belong to another network"),
             ([], not_a_checkpoint, "not a torch.save archive"),
             ([], old_network, "its network cannot be built here")]
    for extra, weights, message in cases:
        argv = ["--init-weights", str(weights), "--out-dir", str(tmp_path / "run"), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
