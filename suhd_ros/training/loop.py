"""The training loop: a ReLU YOLOv5 (ready for conversion) on the benchmark or a user's dataset.

The recipe is YOLOv5's (v6.x, hyp.scratch-low): the loss of `suhd_ros.training.loss`, gradient
accumulation to a nominal batch of 64, AdamW (beta1 0.937; chosen by measurement for short CPU
runs) or SGD with Nesterov momentum 0.937, a cosine learning rate with linear warm-up, an EMA
of the weights (the EMA is what gets evaluated and saved), mosaic (on a dataset; off for the
last epochs) and HSV / flip / scale / translate augmentation. Scenes come from the generator on
the fly (fresh scenes every epoch) or from a dataset in the YOLO, COCO or VOC layout
(`suhd_ros.datasets`), whose class names the model takes. Samples are prepared by a torch
DataLoader's worker processes; the network runs on the CPU or a CUDA device, with mixed
precision on CUDA.

Outputs in `out_dir`: `last.pt` (resumable: tensors and plain values only, loadable with
`torch.load(..., weights_only=True)`), `best.safetensors` (a project model file of the best EMA
weights by COCO fitness), `results.json` (per-epoch losses, mAP, learning rate and training
seconds) and the same as `results.csv`, `results.md` and `results.png` (plots, with matplotlib).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import multiprocessing
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from suhd_ros.conversion import snn_model_metadata
from suhd_ros.datasets import DatasetError, open_dataset
from suhd_ros.detector import resolve_device
from suhd_ros.evaluation.coco import evaluate_detections
from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.quantisation_aware import SUHDQuantiser, ann_state_dict, quantiser_lambdas
from suhd_ros.training.augment import Augmentation
from suhd_ros.training.dataset import (
    GeneratedScenes,
    Samples,
    SceneSource,
    as_list,
    collate,
)
from suhd_ros.training.loss import LossGains, YoloLoss
from suhd_ros.training.quantisation_aware import (
    BlockOutputs,
    calibration_batches,
    distillation_loss,
    feature_distillation_loss,
    float_teacher,
    freeze_batchnorm_statistics,
    quantise_model,
    quantiser_coding,
)
from suhd_ros.training.results import write_results
from suhd_ros.yolo.blocks import ACTIVATIONS
from suhd_ros.yolo.checkpoint import import_ultralytics_checkpoint
from suhd_ros.yolo.config import MULTIPLES, yolov5_description
from suhd_ros.yolo.model import YOLOv5, load_checked_state_dict
from suhd_ros.yolo.model_file import (
    ModelFileError,
    load_model_file,
    model_metadata,
    save_model_file,
    sha256_file,
)
from suhd_ros.yolo.postprocess import postprocess

CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.safetensors"
RESULTS_NAME = "results.json"
# settings a resumed run may change (out_dir: a run folder may be moved or copied)
_ANY_RUN = ("out_dir", "epochs", "resume", "progress", "threads", "device", "workers")
GENERATED_PER_EPOCH = 2000  # fresh scenes per epoch when no dataset is given
LOG = logging.getLogger("suhd_ros.training")


class ResumeError(ValueError):
    """A run that cannot be resumed: no checkpoint, or one made with other settings."""


def _opt(default: object, help_text: str, choices: Sequence[str] | None = None):
    """A config field whose help text (and allowed values) also serve the command line."""
    return field(default=default, metadata={"help": help_text, "choices": choices})


@dataclass
class TrainConfig:
    """One training run; every field is also a `suhd-train` option."""

    out_dir: str = _opt("runs/train", "folder for last.pt, best.safetensors, results.json")
    data: str | None = _opt(None, "dataset: a YOLO data.yaml or folder, a COCO folder "
                            "(annotations/instances_*.json), a VOC devkit or year folder; "
                            "default: the built-in benchmark drawn on the fly")
    train_split: str = _opt("train", "the dataset's training split ('a+b' joins; VOC: "
                            "trainval, VOC2007/trainval, ...)")
    val_split: str = _opt("val", "the dataset's validation split (VOC07+12: VOC2007/test)")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N (auto: CUDA when there is one)")
    amp: bool = _opt(True, "mixed precision on CUDA (no effect on the CPU)")
    workers: int = _opt(2, "DataLoader worker processes preparing samples (0: in this one)")
    size: str | None = _opt(None, "YOLOv5 size n/s/m/l/x (default: the --init-weights "
                            "network's, else n)", choices=tuple(MULTIPLES))
    activation: str = _opt("relu", "relu (what SUHD converts) or silu (experiments: "
                           "suhd-convert runs SiLU as ReLU, an approximation)",
                           choices=ACTIVATIONS)
    width_multiple: float | None = _opt(None, "override the size's width multiple")
    depth_multiple: float | None = _opt(None, "override the size's depth multiple")
    img_size: int = _opt(320, "square network input, pixels (multiple of 32)")
    scene_size: int | None = _opt(
        None, "side of generated scenes, pixels; default img_size (smaller: letterboxed up)"
    )
    epochs: int = _opt(30, "epochs")
    batch_size: int = _opt(16, "images per forward pass")
    nominal_batch: int = _opt(64, "images per optimiser step (gradient accumulation)")
    train_images: int | None = _opt(
        None, f"training images per epoch (default: the whole dataset, or "
              f"{GENERATED_PER_EPOCH} generated scenes)")
    val_images: int = _opt(200, "validation images (generator only)")
    # measured: 10 epochs x 1024 scenes at 128 px, YOLOv5n, CPU: AdamW(lr0 0.001) reached
    # mAP@0.5 0.010 / box loss 0.082 where SGD(lr0 0.01) reached 0.002 / 0.092
    optimizer: str = _opt("adamw", "adamw or sgd (Nesterov; YOLOv5's choice for long runs)",
                          choices=("adamw", "sgd"))
    lr0: float = _opt(0.001, "initial learning rate (YOLOv5: 0.001 AdamW, 0.01 SGD)")
    lrf: float = _opt(0.01, "final learning rate as a fraction of lr0 (cosine)")
    momentum: float = _opt(0.937, "SGD momentum / AdamW beta1")
    weight_decay: float = _opt(5e-4, "weight decay of conv weights, per nominal batch")
    warmup_epochs: float = _opt(3.0, "warm-up length in epochs")
    warmup_min_iters: int = _opt(100, "shortest warm-up in batches")
    warmup_momentum: float = _opt(0.8, "momentum at the start of warm-up")
    warmup_bias_lr: float = _opt(0.1, "bias learning rate at the start of warm-up")
    box: float = _opt(LossGains.box, "box loss gain")
    obj: float = _opt(LossGains.obj, "objectness loss gain")
    cls: float = _opt(LossGains.cls, "class loss gain")
    anchor_t: float = _opt(LossGains.anchor_t, "anchor-target size ratio threshold")
    hsv_h: float = _opt(Augmentation.hsv_h, "hue augmentation gain")
    hsv_s: float = _opt(Augmentation.hsv_s, "saturation augmentation gain")
    hsv_v: float = _opt(Augmentation.hsv_v, "value augmentation gain")
    fliplr: float = _opt(Augmentation.fliplr, "left-right flip probability")
    flipud: float | None = _opt(None, f"up-down flip probability (default: "
                                f"{Augmentation.flipud} on the benchmark, 0 on a dataset)")
    scale: float = _opt(Augmentation.scale, "random scale +/- gain")
    translate: float = _opt(Augmentation.translate, "random translation +/- fraction")
    mosaic: float | None = _opt(None, "probability of a 4-image mosaic sample (default: 1 on a "
                                "dataset, 0 on the benchmark)")
    close_mosaic: int | None = _opt(None, "epochs at the end without mosaic (default: 10, at "
                                    "most a quarter of --epochs)")
    ema_decay: float = _opt(0.9999, "EMA decay")
    ema_tau: float = _opt(2000.0, "EMA ramp: decay * (1 - exp(-updates / tau))")
    conf_threshold: float = _opt(0.001, "validation score threshold")
    val_multi_label: bool = _opt(True, "validate as YOLOv5's val.py does: a box ranked under "
                                 "every class above the threshold (false: one class per box, "
                                 "as the node publishes; the default model was chosen so)")
    iou_threshold: float = _opt(0.6, "validation NMS IoU threshold")
    seed: int = _opt(0, "seed of initial weights, scene order and augmentation")
    init_weights: str | None = _opt(None, "start from a model file's or an Ultralytics YOLOv5 "
                                    ".pt checkpoint's weights (fine-tuning; the head is "
                                    "re-initialised when the class count differs)")
    quantise: str | None = _opt(None, "T,F_C: fine-tune with SUHD's quantiser in place of each "
                                "ReLU (quantisation-aware; start from --init-weights); writes "
                                "an SNN model file that needs no suhd-convert")
    half_start: bool = _opt(True, "with --quantise: the membrane starts at theta/2 (rounds)")
    percentile: float = _opt(99.99, "with --quantise: activation percentile setting thresholds")
    per_channel: bool = _opt(True, "with --quantise: one threshold per channel")
    calibration_images: int = _opt(256, "with --quantise: training images to calibrate on")
    threshold_lr: float = _opt(0.0, "with --quantise: learn the thresholds (log lambda, LSQ "
                               "gradient) at this learning rate; 0 keeps them as calibrated")
    distil: float = _opt(0.0, "with --quantise: weight of distillation from the float network "
                         "(its outputs as targets, added to the detection loss); 0: none")
    distil_features: float = _opt(0.0, "with --quantise: weight of feature distillation: each "
                                  "quantiser's output against the float network's activation "
                                  "there (relative squared error, mean over blocks); 0: none")
    freeze_bn: bool = _opt(False, "keep BatchNorm statistics as loaded (BN in eval mode while "
                           "training): the quantisers' thresholds were calibrated on them")
    threads: int = _opt(2, "CPU threads (command line only)")
    resume: bool = _opt(False, "continue the run in out_dir from last.pt")
    progress: bool = _opt(True, "show progress bars")

    def augmentation(self, epoch: int = 0) -> Augmentation:
        """The augmentation of `epoch`: mosaic off in the last `close_mosaic` epochs."""
        values = {f.name: getattr(self, f.name) for f in fields(Augmentation)}
        if values["flipud"] is None:  # real scenes have an up; the shapes do not
            values["flipud"] = Augmentation.flipud if self.data is None else 0.0
        if values["mosaic"] is None:  # the benchmark's recipe (the default model's) has none
            values["mosaic"] = Augmentation.mosaic if self.data is None else 1.0
        if epoch >= self.epochs - self.mosaic_off_epochs():
            values["mosaic"] = 0.0
        return Augmentation(**values)

    def mosaic_off_epochs(self) -> int:
        """--close-mosaic, by default 10 (Ultralytics') but at most a quarter of the run: the
        last epochs then see whole frames, as the network will at inference."""
        if self.close_mosaic is not None:
            return self.close_mosaic
        return min(10, self.epochs // 4)

    def gains(self) -> LossGains:
        return LossGains(**{f.name: getattr(self, f.name) for f in fields(LossGains)})


# ----------------------------------------------------------------------------- model, optimiser


def make_model(config: TrainConfig, names: Sequence[str]) -> YOLOv5:
    """A fresh YOLOv5 for `names` (the seed fixes the initial weights), started from
    --init-weights when given: its network unless --size says otherwise, its weights where the
    shapes match."""
    init = read_init_weights(config.init_weights) if config.init_weights else None
    description = _description(config, len(names), init)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        try:
            model = YOLOv5.from_description(description, activation=config.activation,
                                            names=list(names))
        except (ValueError, KeyError, TypeError, IndexError) as e:
            if init is None:
                raise
            raise ModelFileError(f"--init-weights {init.source}: its network cannot be built "
                                 f"here ({type(e).__name__}: {str(e)[:160]})") from None
    if config.activation != "relu":
        LOG.warning("training a %s network: SUHD converts ReLU networks only (suhd-convert "
                    "would run it as ReLU, an approximation)", config.activation)
    if init is not None:
        if init.activation != config.activation:
            LOG.warning("init weights: %s's %s activations are trained as %s (the network built "
                        "here); expect a drop until fine-tuning recovers it", init.source,
                        init.activation.upper(), config.activation.upper())
        load_init_weights(model, init.state_dict, init.source)
    return model


@dataclass(frozen=True)
class InitWeights:
    """Weights to start from, with the network description and activation they were made with."""

    source: str
    description: dict
    state_dict: dict[str, torch.Tensor]
    activation: str


def read_init_weights(path: str) -> InitWeights:
    """Our model file, or an Ultralytics YOLOv5 `.pt` read by the safe importer (no pickled code
    runs); a torch.save file is a zip archive, a model file (safetensors) never is."""
    if zipfile.is_zipfile(path):
        imported = import_ultralytics_checkpoint(path)
        return InitWeights(path, imported.description, imported.state_dict, imported.activation)
    model_file = load_model_file(path)
    meta = model_file.metadata
    return InitWeights(path, meta["description"], model_file.state_dict, meta["activation"])


def _description(config: TrainConfig, nc: int, init: InitWeights | None) -> dict:
    """--size's description, else the init weights' own (depth, width, anchors, BN eps),
    else YOLOv5n's; for `nc` classes, with the multiples' overrides."""
    if config.size is None and init is not None:
        description = copy.deepcopy(init.description)
        description["nc"] = nc
        for key in ("activation", "act"):  # Ultralytics' yaml key; the network is config's
            description.pop(key, None)
    else:
        description = yolov5_description(config.size or "n", nc)
    if config.width_multiple is not None:
        description["width_multiple"] = config.width_multiple
    if config.depth_multiple is not None:
        description["depth_multiple"] = config.depth_multiple
    return description


def load_init_weights(model: YOLOv5, state_dict: dict[str, torch.Tensor],
                      source: str = "init weights") -> None:
    """All of `state_dict` when it fits; with another class count every layer but the head's
    class-dependent convolutions, which keep their fresh initialisation. One log line says
    what loaded and what did not."""
    own = model.state_dict()
    head = next(name for name, module in model.named_modules() if module is model.detect) + "."
    differing = [k for k, v in own.items() if k not in state_dict or state_dict[k].shape != v.shape]
    if any(not k.startswith(head) for k in differing) or state_dict.keys() - own.keys():
        raise ModelFileError(f"--init-weights {source}: these weights belong to another network "
                             f"(first differences: {differing[:3]}); check --size, or leave it "
                             "out to take the network from the file")
    if not differing:
        load_checked_state_dict(model, state_dict)
        LOG.info("init weights: all %d tensors loaded from %s", len(own), source)
        return
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in differing},
                          strict=False)
    skipped = sorted({k.rsplit(".", 1)[0] for k in differing})
    LOG.warning("init weights: %d of %d tensors loaded from %s; re-initialised for %d classes: "
                "%s", len(own) - len(differing), len(own), source, len(model.names),
                ", ".join(skipped))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Three groups as in YOLOv5: conv weights (decayed), norm weights, biases (not decayed);
    a fourth for learnt SUHD thresholds (--threshold-lr), not decayed."""
    decayed, norm_weights, biases, thresholds = [], [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, SUHDQuantiser):
                thresholds.append(p)
            elif name == "bias":
                biases.append(p)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                norm_weights.append(p)
            else:
                decayed.append(p)
    groups = [
        {"params": decayed, "weight_decay": _scaled_decay(config)},
        {"params": norm_weights, "weight_decay": 0.0},
        {"params": biases, "weight_decay": 0.0},
    ]
    if thresholds:  # learnt SUHD thresholds: their own learning rate, same schedule
        groups.append({"params": thresholds, "weight_decay": 0.0,
                       "lr_scale": config.threshold_lr / config.lr0})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr0, momentum=config.momentum, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr0, betas=(config.momentum, 0.999))
    raise ValueError(f"unknown optimizer {config.optimizer!r}; expected sgd or adamw")


def _accumulate(config: TrainConfig) -> int:
    return max(round(config.nominal_batch / config.batch_size), 1)


def _scaled_decay(config: TrainConfig) -> float:
    """YOLOv5 scales weight decay to the images actually seen per optimiser step."""
    return config.weight_decay * config.batch_size * _accumulate(config) / config.nominal_batch


class ModelEMA:
    """Exponential moving average of weights and buffers, decay ramped up from 0 (YOLOv5)."""

    def __init__(self, model: nn.Module, decay: float, tau: float, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(current[name].detach(), alpha=1 - d)


def lr_factor(epoch: float, config: TrainConfig) -> float:
    """Cosine from 1 at epoch 0 to lrf at the last epoch."""
    return ((1 - math.cos(epoch * math.pi / config.epochs)) / 2) * (config.lrf - 1) + 1


def _set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, config: TrainConfig) -> None:
    for group in optimizer.param_groups:
        group["lr"] = config.lr0 * lr_factor(epoch, config) * group.get("lr_scale", 1.0)


def _warm_up(
    optimizer: torch.optim.Optimizer, step: int, warmup_steps: int, epoch: int, config: TrainConfig
) -> int:
    """Linear warm-up of learning rate, momentum and accumulation; returns the accumulation."""
    span = [0, warmup_steps]
    target_lr = config.lr0 * lr_factor(epoch, config)
    for k, group in enumerate(optimizer.param_groups):
        start = config.warmup_bias_lr if k == 2 else 0.0
        group["lr"] = float(np.interp(step, span, [start, target_lr * group.get("lr_scale", 1.0)]))
        momentum = float(np.interp(step, span, [config.warmup_momentum, config.momentum]))
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum
    return max(1, round(float(np.interp(step, span, [1, _accumulate(config)]))))


# ----------------------------------------------------------------------------- data


def make_sources(config: TrainConfig) -> tuple[SceneSource, SceneSource]:
    """(train, val) scene sources: the generator's splits or the dataset's; DatasetError before
    any training when a split is unusable or the two disagree on the class names."""
    if config.data is None:
        size = config.scene_size or config.img_size
        return (
            GeneratedScenes("train", size, size),
            GeneratedScenes("val", size, size, count=config.val_images),
        )
    train_set = open_dataset(config.data, config.train_split)
    val_set = open_dataset(config.data, config.val_split)
    for dataset in (train_set, val_set):
        dataset.report()
        boxes = sum(len(r.class_ids) for r in dataset.records)
        LOG.info("%s: %d images, %d boxes, %d classes", dataset.source, len(dataset), boxes,
                 len(dataset.names))
    if train_set.names != val_set.names:
        raise DatasetError(f"{config.data}: the train and val splits name other classes")
    return train_set, val_set


def epoch_indices(source: SceneSource, epoch: int, config: TrainConfig) -> np.ndarray:
    """Shuffled source indices of one epoch; the generator gets fresh scenes every epoch."""
    default = GENERATED_PER_EPOCH if isinstance(source, GeneratedScenes) else len(source)
    n = min(config.train_images or default, len(source))
    window = (epoch * n + np.arange(n)) % len(source)
    return np.random.default_rng((config.seed, epoch)).permutation(window)


def training_batch(
    source: SceneSource, indices: Sequence[int], epoch: int, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented batch; each sample's randomness depends only on (seed, epoch, index)."""
    samples = Samples(source, config.img_size, config.augmentation(epoch), config.seed, epoch)
    return collate([samples[int(i)] for i in indices])


def _loader(samples: Samples, batches: Sequence[Sequence[int]], collate_fn,
            config: TrainConfig) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        samples, batch_sampler=[[int(i) for i in b] for b in batches], collate_fn=collate_fn,
        num_workers=worker_count(config))  # no cv2.setNumThreads in a worker: it hangs after fork


# runtimes whose threads do not survive a fork: a worker forked after they loaded has crashed
# the parent (SIGSEGV in pytest) or hung (seen with the backends tests, commits 3e31ff8, 051e706)
FORK_UNSAFE_MODULES = ("openvino", "onnxruntime")


def worker_count(config: TrainConfig) -> int:
    """--workers, or 0 (with one warning) when the workers would be forked from a process that
    has loaded OpenVINO or ONNX Runtime."""
    loaded = tuple(name for name in FORK_UNSAFE_MODULES if name in sys.modules)
    method = (multiprocessing.get_start_method(allow_none=True)
              or multiprocessing.get_all_start_methods()[0])  # the first is the default
    if config.workers and loaded and method == "fork":
        _warn_fork_unsafe(loaded)
        return 0
    return config.workers


@functools.cache
def _warn_fork_unsafe(loaded: tuple[str, ...]) -> None:
    LOG.warning("this process has loaded %s, which a forked DataLoader worker can crash: "
                "samples are prepared in this process (--workers 0)", " and ".join(loaded))


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    model: YOLOv5, source: SceneSource, config: TrainConfig, progress: bool = False
) -> dict:
    """COCO mAP of `model` on `source` in network-input coordinates (letterboxed), scored as
    YOLOv5's val.py scores it (multi-label, as suhd-eval) or, with `val_multi_label` off, one
    class per box as the node publishes (about 0.02 lower on the benchmark). Crowd / difficult
    boxes are COCO crowd regions: matching them is neither hit nor miss."""
    model.eval()
    device = next(model.parameters()).device
    gt, dets = [], []
    starts = range(0, len(source), config.batch_size)
    batches = [range(s, min(s + config.batch_size, len(source))) for s in starts]
    loader = _loader(Samples(source, config.img_size), batches, as_list, config)
    for samples in tqdm(loader, desc="val", disable=not progress, leave=False):
        images, _ = collate(samples)
        with _autocast(device, config):
            decoded, _ = model(images.to(device, non_blocking=True))
        found = postprocess(decoded, config.conf_threshold, config.iou_threshold, max_det=300,
                            multi_label=config.val_multi_label)
        size = config.img_size
        gt += [(s.boxes_xyxy, s.class_ids, size, size, s.ignore) for s in samples]
        dets += [(d.boxes_xyxy, d.scores, d.class_ids) for d in found]
    return evaluate_detections(gt, dets, num_classes=len(model.names), class_names=model.names)


def _autocast(device: torch.device, config: TrainConfig) -> torch.autocast:
    """float16 autocast on CUDA when `amp`; a no-op context elsewhere."""
    enabled = config.amp and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.float16, enabled=enabled)


def fitness(metrics: dict) -> float:
    """YOLOv5's model-selection score: 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95 (NaN counts as 0)."""
    value = 0.1 * metrics["map50"] + 0.9 * metrics["map50_95"]
    return 0.0 if math.isnan(value) else value


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class RunState:
    """Everything a resumed run needs besides the modules themselves."""

    epoch: int = -1  # last finished epoch
    best_fitness: float = -1.0
    history: list[dict] = field(default_factory=list)


def save_checkpoint(path: Path, run: _Run, state: RunState, config: TrainConfig) -> None:
    """Tensors and plain values only (no pickled code); written atomically."""
    payload = {
        "model": run.model.state_dict(),
        "ema": run.ema.module.state_dict(),
        "ema_updates": run.ema.updates,
        "optimizer": run.optimizer.state_dict(),
        "lambdas": run.lambdas,
        "state": asdict(state),
        "config": asdict(config),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _check_resumable(saved: dict, config: TrainConfig) -> None:
    current = asdict(config)
    changed = [k for k, v in saved.items() if k not in _ANY_RUN and current.get(k) != v]
    if changed:
        raise ResumeError(f"cannot resume: settings differ from the saved run: {changed}")


def _saved_checkpoint(out_dir: str, device: torch.device | str = "cpu",
                      mmap: bool = False) -> dict:
    """`out_dir`'s last.pt; with `mmap`, tensors are mapped, not read (for its settings alone)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise ResumeError(f"nothing to resume: {path} does not exist")
    return torch.load(path, weights_only=True, map_location=device, mmap=mmap)


def resumed_config(given: dict) -> TrainConfig:
    """The settings of the run saved in `given["out_dir"]` with `given` applied, so that
    `suhd-train --out-dir RUN --resume` needs no other option. Only the settings in `_ANY_RUN`
    (epochs, threads, ...) may differ from the saved ones; the others may be repeated."""
    saved = _saved_checkpoint(given.get("out_dir", TrainConfig.out_dir), mmap=True)["config"]
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in {**saved, **given}.items() if k in known})
    config.resume = True
    _check_resumable(saved, config)
    return config


def load_checkpoint(
    payload: dict,
    model: nn.Module,
    ema: ModelEMA,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
) -> RunState:
    """Restore a run saved by `save_checkpoint` (its loaded payload); refuses one made with
    other settings."""
    _check_resumable(payload["config"], config)
    model.load_state_dict(payload["model"])
    ema.module.load_state_dict(payload["ema"])
    ema.updates = int(payload["ema_updates"])
    optimizer.load_state_dict(payload["optimizer"])
    return RunState(**payload["state"])


def _save_best(path: Path, run: _Run, config: TrainConfig) -> None:
    """The EMA weights as a model file; with --quantise an SNN model file (lambdas, coding)."""
    size = (config.img_size, config.img_size)
    if run.coding is None:
        save_model_file(path, run.ema.module.state_dict(), model_metadata(run.ema.module, size))
        return
    lambdas = quantiser_lambdas(run.ema.module)  # as calibrated, or as learnt
    metadata = snn_model_metadata(run.ema.module, size, run.coding, lambdas, config.percentile,
                                  config.per_channel, quantisation_aware=True,
                                  learnt_thresholds=config.threshold_lr > 0,
                                  source_sha256=run.source_sha256)
    save_model_file(path, ann_state_dict(run.ema.module), metadata, lambdas)


# ----------------------------------------------------------------------------- the loop


@dataclass
class _Run:
    """What one epoch updates: the network, its EMA, the optimiser, the AMP gradient scaler."""

    model: YOLOv5
    ema: ModelEMA
    optimizer: torch.optim.Optimizer
    loss_fn: YoloLoss
    scaler: torch.amp.GradScaler
    device: torch.device
    coding: SpikeCoding | None = None  # with --quantise: what the quantisers emulate
    lambdas: dict[str, torch.Tensor] = field(default_factory=dict)  # and their thresholds
    teacher: nn.Module | None = None  # with --distil or --distil-features: the float network
    features: tuple[BlockOutputs, BlockOutputs] | None = None  # (network, teacher) blocks
    source_sha256: str | None = None  # with --quantise: the --init-weights file fine-tuned


def _optimiser_step(run: _Run) -> None:
    run.scaler.unscale_(run.optimizer)
    nn.utils.clip_grad_norm_(run.model.parameters(), max_norm=10.0)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.ema.update(run.model)


def _distillation(run: _Run, predictions: list, target: list,
                  config: TrainConfig) -> torch.Tensor | float:
    """The distillation terms of the loss: head outputs (--distil), conv blocks'
    outputs (--distil-features), from the float network's forward pass just made."""
    loss = config.distil * distillation_loss(predictions, target) if config.distil else 0.0
    if run.features is not None:
        student, teacher = run.features
        loss = loss + config.distil_features * feature_distillation_loss(student.outputs,
                                                                         teacher.outputs)
        student.outputs.clear()  # nothing of this step outlives it
        teacher.outputs.clear()
    return loss


def _train_epoch(epoch: int, run: _Run, source: SceneSource, config: TrainConfig) -> dict:
    """One pass over the epoch's scenes; returns the mean loss parts."""
    run.model.train()
    if config.freeze_bn:
        freeze_batchnorm_statistics(run.model)
    indices = epoch_indices(source, epoch, config)
    size = config.batch_size
    batches = [indices[i : i + size] for i in range(0, len(indices), size)]
    warmup_steps = max(round(config.warmup_epochs * len(batches)), config.warmup_min_iters)
    accumulate, pending = _accumulate(config), 0
    _set_epoch_lr(run.optimizer, epoch, config)
    total = torch.zeros(3)
    samples = Samples(source, config.img_size, config.augmentation(epoch), config.seed, epoch)
    loader = _loader(samples, batches, collate, config)
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress)
    for k, (images, targets) in enumerate(bar):
        step = k + epoch * len(batches)
        if step <= warmup_steps:
            accumulate = _warm_up(run.optimizer, step, warmup_steps, epoch, config)
        images = images.to(run.device, non_blocking=True)
        with _autocast(run.device, config):
            predictions = run.model(images)
            loss, parts = run.loss_fn(predictions, targets.to(run.device))
            if run.teacher is not None:
                with torch.no_grad():
                    _, target = run.teacher(images)
                loss = loss + _distillation(run, predictions, target, config)
        run.scaler.scale(loss).backward()
        pending += 1
        if pending >= accumulate or k == len(batches) - 1:
            _optimiser_step(run)
            pending = 0
        parts = parts.float().cpu()
        total += parts
        bar.set_postfix(box=f"{parts[0]:.4f}", obj=f"{parts[1]:.4f}", cls=f"{parts[2]:.4f}")
    mean = total / max(len(batches), 1)
    return {"box_loss": float(mean[0]), "obj_loss": float(mean[1]), "cls_loss": float(mean[2]),
            "lr": run.optimizer.param_groups[0]["lr"], "mosaic": samples.aug.mosaic}


def _start(config: TrainConfig, source: SceneSource, out: Path) -> tuple[_Run, RunState]:
    """The network on its device (with SUHD quantisers when asked), EMA, optimiser and loss;
    the saved state when resuming."""
    device = resolve_device(config.device)
    model = make_model(config, source.names).to(device)
    saved = _saved_checkpoint(str(out), device) if config.resume else None
    coding, lambdas, teacher, source_sha256 = None, {}, None, None
    if config.quantise and config.init_weights:  # hashed once, while make_model has just read it
        source_sha256 = sha256_file(config.init_weights)
    if config.quantise and (config.distil > 0 or config.distil_features > 0):
        teacher = float_teacher(model)
    if config.quantise:
        coding = quantiser_coding(config.quantise, config.half_start)
        lambdas = quantise_model(
            model, coding, saved["lambdas"] if saved else None,
            calibration_batches(source, config.img_size, config.calibration_images),
            config.percentile, config.per_channel, learn=config.threshold_lr > 0)
    ema = ModelEMA(model, config.ema_decay, config.ema_tau)
    features = None  # hooks go in after the EMA copy, which must not record
    if teacher is not None and config.distil_features > 0:
        features = (BlockOutputs(model), BlockOutputs(teacher))
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    state = RunState() if saved is None else load_checkpoint(saved, model, ema, optimizer, config)
    loss_fn = YoloLoss(model.detect, config.img_size, config.gains())
    return _Run(model, ema, optimizer, loss_fn, scaler, device, coding, lambdas, teacher,
                features, source_sha256), state


def train(config: TrainConfig) -> Path:
    """Run (or resume) training; returns the path of the best weights (a model file).

    Everything that can be wrong with the input (dataset, device, weights, resume) raises
    before the first epoch: DatasetError, DetectorError, ModelFileError or ResumeError."""
    out = Path(config.out_dir)
    train_source, val_source = make_sources(config)
    out.mkdir(parents=True, exist_ok=True)
    run, state = _start(config, train_source, out)
    for epoch in range(state.epoch + 1, config.epochs):
        started = time.perf_counter()
        losses = _train_epoch(epoch, run, train_source, config)
        losses["seconds"] = round(time.perf_counter() - started, 2)  # training, not validation
        metrics = evaluate(run.ema.module, val_source, config, progress=config.progress)
        score = fitness(metrics)
        state.epoch = epoch
        maps = {"map50": metrics["map50"], "map50_95": metrics["map50_95"]}
        state.history.append({"epoch": epoch, **losses, **maps, "fitness": score})
        if score > state.best_fitness or not (out / BEST_NAME).is_file():
            state.best_fitness = max(score, state.best_fitness)
            _save_best(out / BEST_NAME, run, config)
        save_checkpoint(out / CHECKPOINT_NAME, run, state, config)
        (out / RESULTS_NAME).write_text(json.dumps(state.history, indent=1))
        write_results(out, state.history)
        if config.progress:
            tqdm.write(f"epoch {epoch + 1}: mAP@0.5 {maps['map50']:.4f}, "
                       f"mAP@0.5:0.95 {maps['map50_95']:.4f}")
    if not (out / BEST_NAME).is_file():
        _save_best(out / BEST_NAME, run, config)
    return out / BEST_NAME
