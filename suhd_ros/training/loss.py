"""The YOLOv5 (v6.x) training loss: target assignment, CIoU box loss, BCE objectness and class.

Written from the published YOLOv5 recipe so a network trained here behaves like a stock one:
- a target goes to every anchor whose width and height ratios to it stay below `anchor_t`
  (4.0), in its own grid cell and in the two neighbouring cells whose border it lies within
  `g = 0.5` cells of (three cells per anchor, more positives than the classic one cell);
- box loss `1 - CIoU`, objectness BCE against the (detached) IoU of each positive, weighted per
  level by `BALANCE` (P3 4.0, P4 1.0, P5 0.4), class BCE with one-hot targets;
- gains box 0.05 / obj 1.0 / cls 0.5, rescaled as YOLOv5 does: by 3 / levels, by nc / 80 for
  classes and by (image size / 640)^2 for objectness, so the defaults suit any size and nc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

BALANCE = (4.0, 1.0, 0.4)  # objectness weight of P3, P4, P5
NEIGHBOUR_REACH = 0.5  # g: how close to a cell border a centre must be to also use that neighbour
# the cell itself, then the left, upper, right and lower neighbours (x, y), in cells
_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)


@dataclass(frozen=True)
class LossGains:
    """YOLOv5's loss hyper-parameters, before the per-size scaling described above."""

    box: float = 0.05
    obj: float = 1.0
    cls: float = 0.5
    anchor_t: float = 4.0


@dataclass
class LevelTargets:
    """Positives of one level: where they sit, what they must predict."""

    image: torch.Tensor  # [P] image index in the batch
    anchor: torch.Tensor  # [P] anchor index
    gj: torch.Tensor  # [P] grid row
    gi: torch.Tensor  # [P] grid column
    box: torch.Tensor  # [P, 4] centre offset within the cell (x, y) and size (w, h), in cells
    anchor_wh: torch.Tensor  # [P, 2] the matched anchor, in cells
    cls: torch.Tensor  # [P] class index


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of paired xywh boxes [..., 4] -> [...] (Zheng et al. 2020).

    CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha v, v measuring the aspect
    mismatch; alpha is a weight treated as a constant, as in the paper.
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    left = torch.maximum(x1 - w1 / 2, x2 - w2 / 2)
    right = torch.minimum(x1 + w1 / 2, x2 + w2 / 2)
    top = torch.maximum(y1 - h1 / 2, y2 - h2 / 2)
    bottom = torch.minimum(y1 + h1 / 2, y2 + h2 / 2)
    inter = (right - left).clamp(min=0) * (bottom - top).clamp(min=0)
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    enclose_w = torch.maximum(x1 + w1 / 2, x2 + w2 / 2) - torch.minimum(x1 - w1 / 2, x2 - w2 / 2)
    enclose_h = torch.maximum(y1 + h1 / 2, y2 + h2 / 2) - torch.minimum(y1 - h1 / 2, y2 - h2 / 2)
    diagonal2 = enclose_w**2 + enclose_h**2 + eps
    distance2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (distance2 / diagonal2 + alpha * v)


class YoloLoss:
    """Loss of Detect's raw training outputs against normalised targets.

    `targets` is [M, 6]: (image index, class, cx, cy, w, h) with coordinates in 0..1 of the
    network input. Returns (loss scaled by the batch size as YOLOv5 does, [box, obj, cls]).
    """

    def __init__(self, detect: nn.Module, img_size: int, gains: LossGains | None = None) -> None:
        gains = gains or LossGains()
        self.nl, self.na, self.nc = detect.nl, detect.na, detect.nc
        if self.nl != len(BALANCE):
            raise ValueError(f"YOLOv5 loss balances {len(BALANCE)} levels, Detect has {self.nl}")
        self.anchors = detect.anchors.detach().clone()  # [nl, na, 2] in grid cells
        self.anchor_t = gains.anchor_t
        level_scale = 3.0 / self.nl
        self.box_gain = gains.box * level_scale
        self.cls_gain = gains.cls * self.nc / 80.0 * level_scale
        self.obj_gain = gains.obj * (img_size / 640.0) ** 2 * level_scale
        self.bce = nn.BCEWithLogitsLoss()

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor) -> list[LevelTargets]:
        """Assign every target to anchors and cells of every level (see the module docstring)."""
        anchor_index = torch.arange(self.na, dtype=targets.dtype, device=targets.device)
        anchor_index = anchor_index.view(self.na, 1, 1)
        # [na, M, 7]: each target once per anchor, the anchor index appended
        repeated = targets.unsqueeze(0).expand(self.na, -1, -1)
        per_anchor = torch.cat((repeated, anchor_index.expand(-1, len(targets), 1)), dim=2)
        anchors = self.anchors.to(targets.device)
        return [self._level_targets(p, anchors[i], per_anchor) for i, p in enumerate(preds)]

    def _level_targets(
        self, pred: torch.Tensor, anchors: torch.Tensor, per_anchor: torch.Tensor
    ) -> LevelTargets:
        ny, nx = pred.shape[2], pred.shape[3]
        scale = per_anchor.new_tensor([1, 1, nx, ny, nx, ny, 1])
        t = per_anchor * scale  # boxes in cells of this level
        ratio = t[..., 4:6] / anchors.view(self.na, 1, 2)
        t = t[torch.maximum(ratio, 1 / ratio).amax(dim=2) < self.anchor_t]  # [P, 7]
        xy = t[:, 2:4]
        xy_from_far = xy.new_tensor([nx, ny]) - xy
        g = NEIGHBOUR_REACH
        near_low = ((xy % 1 < g) & (xy > 1)).T  # close to the left / upper border
        near_high = ((xy_from_far % 1 < g) & (xy_from_far > 1)).T  # right / lower border
        use = torch.stack((torch.ones_like(near_low[0]), *near_low, *near_high))  # [5, P]
        offsets = (_OFFSETS.to(t.device, t.dtype) * g).unsqueeze(1).expand(-1, len(t), -1)[use]
        t = t.unsqueeze(0).expand(5, -1, -1)[use]
        cell = (t[:, 2:4] - offsets).long()
        cell[:, 0].clamp_(0, nx - 1)  # a centre on the far border still belongs to the image
        cell[:, 1].clamp_(0, ny - 1)
        anchor = t[:, 6].long()
        return LevelTargets(
            image=t[:, 0].long(),
            anchor=anchor,
            gj=cell[:, 1],
            gi=cell[:, 0],
            box=torch.cat((t[:, 2:4] - cell, t[:, 4:6]), dim=1),
            anchor_wh=anchors[anchor],
            cls=t[:, 1].long(),
        )

    def __call__(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        zero = preds[0].new_zeros(())
        box_loss, obj_loss, cls_loss = zero, zero, zero
        levels = self.build_targets(preds, targets)
        for pred, level, balance in zip(preds, levels, BALANCE, strict=True):
            obj_target = torch.zeros_like(pred[..., 4])
            if len(level.image):
                p = pred[level.image, level.anchor, level.gj, level.gi]  # [P, 5 + nc]
                xy = p[:, 0:2].sigmoid() * 2 - 0.5
                wh = (p[:, 2:4].sigmoid() * 2) ** 2 * level.anchor_wh
                ciou = bbox_ciou(torch.cat((xy, wh), dim=1), level.box)
                box_loss = box_loss + (1.0 - ciou).mean()
                obj_target[level.image, level.anchor, level.gj, level.gi] = (
                    ciou.detach().clamp(min=0).to(obj_target.dtype)
                )
                if self.nc > 1:
                    one_hot = torch.zeros_like(p[:, 5:])
                    one_hot[torch.arange(len(p)), level.cls] = 1.0
                    cls_loss = cls_loss + self.bce(p[:, 5:], one_hot)
            obj_loss = obj_loss + balance * self.bce(pred[..., 4], obj_target)
        parts = torch.stack(
            (box_loss * self.box_gain, obj_loss * self.obj_gain, cls_loss * self.cls_gain)
        )
        return parts.sum() * preds[0].shape[0], parts.detach()
