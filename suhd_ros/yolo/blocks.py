"""YOLOv5 v6.x building blocks with the attribute names of Ultralytics' models/common.py.

Attribute names match so that state-dict keys match ("model.2.cv1.conv.weight", ...). Every
concatenation uses ``dim=-3`` (channels counted from the end) so the same graph can later carry
spike trains shaped [T, N, C, H, W] as well as [N, C, H, W] tensors.
"""

import torch
from torch import nn

ACTIVATIONS = ("relu", "silu")
CHANNEL_DIM = -3
# YOLOv5's BatchNorm settings (its initialize_weights sets them on every BN layer); a description
# may carry others ("bn_eps", "bn_momentum", e.g. from an imported checkpoint), see YOLOv5
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def make_activation(activation: str) -> nn.Module:
    """ReLU converts to a spiking neuron; SiLU only exists to import stock checkpoints."""
    if activation == "relu":
        return nn.ReLU()
    if activation == "silu":
        return nn.SiLU()
    raise ValueError(f"unsupported activation {activation!r}; expected one of {ACTIVATIONS}")


def autopad(k: int, p: int | None = None) -> int:
    """'Same' padding for odd kernels, as YOLOv5 does when no padding is given."""
    return k // 2 if p is None else p


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + activation: the unit that becomes one spiking layer."""

    def __init__(
        self,
        c1: int,
        c2: int,
        k: int = 1,
        s: int = 1,
        p: int | None = None,
        g: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with a residual add when shapes allow it."""

    def __init__(
        self,
        c1: int,
        c2: int,
        shortcut: bool = True,
        g: int = 1,
        e: float = 0.5,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, activation=activation)
        self.cv2 = Conv(c_, c2, 3, 1, g=g, activation=activation)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    """CSP block with three convs: one branch through n bottlenecks, one shortcut branch."""

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = True,
        g: int = 1,
        e: float = 0.5,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, activation=activation)
        self.cv2 = Conv(c1, c_, 1, 1, activation=activation)
        self.cv3 = Conv(2 * c_, c2, 1, activation=activation)
        self.m = nn.Sequential(
            *(Bottleneck(c_, c_, shortcut, g, e=1.0, activation=activation) for _ in range(n))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=CHANNEL_DIM))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: one k x k max-pool applied three times in a chain."""

    def __init__(self, c1: int, c2: int, k: int = 5, activation: str = "relu") -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, activation=activation)
        self.cv2 = Conv(c_ * 4, c2, 1, 1, activation=activation)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), dim=CHANNEL_DIM))


class Concat(nn.Module):
    """Concatenate on the channel dimension, counted from the end.

    ``dimension`` is given as in YOLOv5's yaml (1 = channels of an NCHW tensor) and stored as a
    negative index so leading dimensions (such as T) may be added.
    """

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension - 4 if dimension >= 0 else dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, dim=self.d)


class Detect(nn.Module):
    """1x1 output convs per level plus the YOLOv5 v6 box decoding.

    ``anchors`` holds pixels at construction; ``YOLOv5`` divides them by the stride once the
    strides are known, so the buffer ends in grid units as in Ultralytics' state dicts.
    """

    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int]) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)

    def forward(
        self, x: list[torch.Tensor]
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        raw = [self._raw(i, xi) for i, xi in enumerate(x)]
        if self.training:
            return raw
        decoded = [self._decode(i, r).view(r.shape[0], -1, self.no) for i, r in enumerate(raw)]
        return torch.cat(decoded, 1), raw

    def _raw(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """[N, na*no, ny, nx] -> [N, na, ny, nx, no]."""
        y = self.m[i](x)
        n, _, ny, nx = y.shape
        return y.view(n, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()

    def _decode(self, i: int, raw: torch.Tensor) -> torch.Tensor:
        """YOLOv5 v6 decoding to input pixels: xy = (2 sig - 0.5 + grid) s, wh = (2 sig)^2 a."""
        _, _, ny, nx, _ = raw.shape
        y = raw.sigmoid()
        gy, gx = torch.meshgrid(
            torch.arange(ny, device=raw.device, dtype=y.dtype),
            torch.arange(nx, device=raw.device, dtype=y.dtype),
            indexing="ij",
        )
        grid = torch.stack((gx, gy), dim=-1).view(1, 1, ny, nx, 2)
        anchor_px = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).to(y.dtype)
        xy = (y[..., 0:2] * 2 - 0.5 + grid) * self.stride[i]
        wh = (y[..., 2:4] * 2) ** 2 * anchor_px
        return torch.cat((xy, wh, y[..., 4:]), dim=-1)
