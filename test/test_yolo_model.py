"""YOLOv5 model: parameter layout and counts, strides, decoding, state-dict round trips."""

import pytest
import torch
from torch import nn

from suhd_ros.yolo.blocks import SPPF, Concat, Conv
from suhd_ros.yolo.config import ANCHORS, yolov5_description
from suhd_ros.yolo.model import YOLOv5

torch.set_num_threads(1)

# YOLOv5 v6.0 model summaries (SiLU layout, nc=80)
KNOWN_PARAMS = {"n": 1_872_157, "s": 7_235_389}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", ["n", "s"])
def test_parameter_count_matches_yolov5(size: str) -> None:
    model = YOLOv5(yolov5_description(size, 80), activation="silu")
    assert _n_params(model) == KNOWN_PARAMS[size]
    # the activation has no parameters, so the ReLU network has the same count
    assert _n_params(YOLOv5(yolov5_description(size, 80))) == KNOWN_PARAMS[size]


def test_parameter_names_follow_yolov5() -> None:
    sd = YOLOv5(yolov5_description("n", 80)).state_dict()
    expected_shapes = {
        "model.0.conv.weight": (16, 3, 6, 6),  # 64 * 0.25 channels, 6x6 stride-2 stem
        "model.0.bn.running_var": (16,),
        "model.2.m.0.cv1.conv.weight": (16, 16, 1, 1),
        "model.8.m.0.cv2.conv.weight": (128, 128, 3, 3),
        "model.9.cv2.conv.weight": (256, 512, 1, 1),  # SPPF: 4 * 128 in, 256 out
        "model.24.m.0.weight": (255, 64, 1, 1),  # 3 anchors * (80 + 5)
        "model.24.m.2.bias": (255,),
        "model.24.anchors": (3, 3, 2),
    }
    for key, shape in expected_shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "model.6.m.2.cv2.bn.num_batches_tracked" in sd  # 9 * 0.33 -> 3 bottlenecks
    assert "model.6.m.3.cv1.conv.weight" not in sd
    assert not any("stride" in k for k in sd)  # stride is not part of YOLOv5 state dicts


def test_blocks_have_yolov5_attributes() -> None:
    model = YOLOv5(yolov5_description("n", 3))
    layers = model.model
    assert len(layers) == 25
    assert [layer.i for layer in layers] == list(range(25))
    assert layers[12].f == [-1, 6] and layers[24].f == [17, 20, 23]
    conv = layers[1]
    assert isinstance(conv, Conv) and conv.conv.bias is None
    assert conv.bn.eps == 1e-3 and conv.bn.momentum == 0.03
    assert isinstance(conv.act, nn.ReLU)
    assert isinstance(YOLOv5(yolov5_description("n", 3), activation="silu").model[1].act, nn.SiLU)
    sppf = layers[9]
    assert isinstance(sppf, SPPF) and isinstance(sppf.m, nn.MaxPool2d)
    assert (sppf.m.kernel_size, sppf.m.stride, sppf.m.padding) == (5, 1, 2)
    assert isinstance(layers[11], nn.Upsample) and layers[11].mode == "nearest"
    assert layers[2].m[0].add and not layers[13].m[0].add  # head C3s have no shortcut


def test_concat_works_with_a_leading_time_dimension() -> None:
    a, b = torch.randn(4, 2, 3, 5, 5), torch.randn(4, 2, 7, 5, 5)
    out = Concat(1)([a, b])
    assert out.shape == (4, 2, 10, 5, 5)
    assert torch.equal(out[:, :, 3:], b)


def test_strides_and_anchors_in_grid_units() -> None:
    model = YOLOv5(yolov5_description("n", 3))
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    anchors_px = model.detect.anchors * model.stride.view(-1, 1, 1)
    assert torch.allclose(anchors_px, torch.tensor(ANCHORS, dtype=torch.float32).view(3, 3, 2))


@pytest.mark.parametrize("hw", [(64, 96), (128, 64)])
def test_output_shapes_per_stride(hw: tuple[int, int]) -> None:
    nc, (h, w) = 3, hw
    model = YOLOv5(yolov5_description("n", nc)).eval()
    with torch.no_grad():
        decoded, raw = model(torch.rand(2, 3, h, w))
    for level, s in enumerate((8, 16, 32)):
        assert raw[level].shape == (2, 3, h // s, w // s, nc + 5)
    cells = sum(3 * (h // s) * (w // s) for s in (8, 16, 32))
    assert decoded.shape == (2, cells, nc + 5)
    model.train()
    train_out = model(torch.rand(1, 3, h, w))
    assert [t.shape[2:4] for t in train_out] == [(h // s, w // s) for s in (8, 16, 32)]


def test_decoding_follows_yolov5_v6_formula() -> None:
    model = YOLOv5(yolov5_description("n", 2)).eval()
    with torch.no_grad():
        decoded, raw = model(torch.rand(1, 3, 64, 64))
    # level 1 (stride 16), anchor 2, cell row y=1, column x=3, written out by hand
    level, a, y, x, s = 1, 2, 1, 3, 16.0
    anchor_px = torch.tensor(ANCHORS[level][2 * a : 2 * a + 2], dtype=torch.float32)
    sig = raw[level][0, a, y, x].sigmoid()
    expected_xy = (sig[:2] * 2 - 0.5 + torch.tensor([x, y], dtype=torch.float32)) * s
    expected_wh = (sig[2:4] * 2) ** 2 * anchor_px
    ny0 = nx0 = 64 // 8
    ny1 = nx1 = 64 // 16
    row = 3 * ny0 * nx0 + a * ny1 * nx1 + y * nx1 + x
    got = decoded[0, row]
    assert torch.allclose(got[:2], expected_xy, atol=1e-5)
    assert torch.allclose(got[2:4], expected_wh, atol=1e-5)
    assert torch.allclose(got[4:], sig[4:], atol=1e-6)


def test_objectness_bias_prior() -> None:
    model = YOLOv5(yolov5_description("n", 80))
    for conv, s in zip(model.detect.m, (8, 16, 32), strict=True):
        obj = conv.bias.view(3, -1)[:, 4]
        prior = torch.log(torch.tensor(8 / (640 / s) ** 2))
        # default init adds at most 1/sqrt(fan_in) <= 1/8
        assert torch.all((obj - prior).abs() <= 0.126)


def _randomise_buffers(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("size", ["n", "s"])
def test_state_dict_round_trip(size: str) -> None:
    torch.manual_seed(0)
    desc = yolov5_description(size, 4)
    source = YOLOv5(desc).eval()
    _randomise_buffers(source, seed=1)
    torch.manual_seed(123)  # a different initialisation for the copy
    copy = YOLOv5(desc).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = copy(x)[0]
        copy.load_state_dict(source.state_dict(), strict=True)
        expected, after = source(x)[0], copy(x)[0]
    assert not torch.equal(before, expected)
    assert torch.equal(after, expected)
