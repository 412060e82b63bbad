"""ANN -> SNN conversion as a graph transformation of the ANN's own module tree.

Recognised ANN pieces (the YOLOv5 layout, but nothing YOLO-specific):
- conv blocks: modules with `.conv` (nn.Conv2d), `.bn` (nn.BatchNorm2d, or nn.Identity once
  folded) and `.act` (nn.ReLU; nn.SiLU only with allow_silu) -> `SpikingConv`;
- nn.MaxPool2d (may be called several times in a chain) -> `SpikeMaxPool`;
- nn.Upsample(mode="nearest", integer scale) -> `SpikeUpsample`;
- any other nn.Conv2d (Detect's bare 1x1 convs) -> `OutputIntegrator`.
Concat, residual add and the head's decoding are Python code and stay as they are.
"""

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.layers import (
    Engine,
    OutputIntegrator,
    SpikeMaxPool,
    SpikeUpsample,
    SpikingConv,
    check_engine,
)

HISTOGRAM_BINS = 4096


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv computing bn(conv(x)) with BN's running statistics (inference mode)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = torch.zeros_like(bn.running_mean) if conv.bias is None else conv.bias.detach()
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, bias=True,
                       padding_mode=conv.padding_mode).to(conv.weight.device)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return folded


def conv_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Conv-BN-activation blocks by module path, in module order."""
    return {
        name: module for name, module in model.named_modules()
        if isinstance(getattr(module, "conv", None), nn.Conv2d)
        and isinstance(getattr(module, "bn", None), nn.BatchNorm2d | nn.Identity)
        and hasattr(module, "act")
    }


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold BN into the conv of every conv block, in place (bn becomes nn.Identity)."""
    for block in conv_blocks(model).values():
        if isinstance(block.bn, nn.BatchNorm2d):
            block.conv = fold_bn(block.conv, block.bn)
            block.bn = nn.Identity()
    return model


class _Histogram:
    """Streaming histogram of non-negative values per channel, for high percentiles.

    Each channel's range is a power of two that doubles (merging bin pairs) when a larger value
    arrives, so one pass over any number of batches suffices, with a resolution of range / bins.
    """

    def __init__(self, channels: int, bins: int) -> None:
        self.bins = bins
        self.counts = torch.zeros(channels, bins, dtype=torch.int64)
        self.top: Tensor | None = None
        self.peak = torch.zeros(channels, dtype=torch.float64)

    @staticmethod
    def _power_of_two_above(x: Tensor) -> Tensor:
        x = torch.where(x > 0, x, torch.full_like(x, 2.0**-24))
        return torch.exp2(torch.ceil(torch.log2(x)))

    def add(self, x: Tensor) -> None:
        """Count x [C, M]."""
        x = x.detach().double().clamp(min=0)
        peak = x.amax(dim=1)
        self.peak = torch.maximum(self.peak, peak)
        self._grow(self._power_of_two_above(peak))
        index = (x / self.top.unsqueeze(1) * self.bins).long().clamp(max=self.bins - 1)
        index = index + torch.arange(x.shape[0]).unsqueeze(1) * self.bins
        self.counts += torch.bincount(index.flatten(), minlength=self.counts.numel()).view_as(
            self.counts)

    def _grow(self, top: Tensor) -> None:
        if self.top is None:
            self.top = top
            return
        top = torch.maximum(self.top, top)
        factor = (top / self.top).round().long().unsqueeze(1)
        new_bin = torch.arange(self.bins).unsqueeze(0) // factor
        self.counts = torch.zeros_like(self.counts).scatter_add_(1, new_bin, self.counts)
        self.top = top

    def percentile(self, q: float) -> Tensor:
        """The q-th percentile per channel [C], interpolated inside its bin, at most the max."""
        cum = self.counts.cumsum(dim=1).double()
        target = cum[:, -1:] * q / 100.0
        j = torch.searchsorted(cum, target).clamp(max=self.bins - 1)
        below = torch.where(j > 0, cum.gather(1, (j - 1).clamp(min=0)), torch.zeros_like(target))
        inside = self.counts.gather(1, j).double().clamp(min=1)
        fraction = ((target - below) / inside).clamp(0, 1)
        value = ((j + fraction) * (self.top.unsqueeze(1) / self.bins)).squeeze(1)
        return torch.minimum(value, self.peak).float()


def calibrate_thresholds(ann: nn.Module, batches: Iterable[Tensor], percentile: float = 99.99,
                         per_channel: bool = False, progress: bool = True) -> dict[str, Tensor]:
    """lambda_l = the percentile of each conv block's activation output over the calibration data.

    Returns {block name: lambda} with a scalar tensor, or [C] with per_channel. All outputs count
    (zeros included); a layer or channel that never activated gets lambda = the largest lambda of
    its layer (or 1.0), so that theta stays positive.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    blocks = conv_blocks(ann)
    histograms: dict[str, _Histogram] = {}

    def observe(name: str, output: Tensor) -> None:
        values = output.transpose(0, 1).flatten(1) if per_channel else output.reshape(1, -1)
        if name not in histograms:
            histograms[name] = _Histogram(values.shape[0], HISTOGRAM_BINS)
        histograms[name].add(values.cpu())

    hooks = [block.register_forward_hook(lambda _m, _i, out, name=name: observe(name, out))
             for name, block in blocks.items()]
    was_training = ann.training
    ann.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc="calibrating", disable=not progress):
                ann(batch)
    finally:
        for hook in hooks:
            hook.remove()
        ann.train(was_training)
    return {name: _positive(hist.percentile(percentile), per_channel)
            for name, hist in histograms.items()}


def _positive(lam: Tensor, per_channel: bool) -> Tensor:
    fallback = lam.max() if lam.max() > 0 else torch.tensor(1.0)
    lam = torch.where(lam > 0, lam, fallback)
    return lam if per_channel else lam.reshape(())


def _check_activation(name: str, act: nn.Module, allow_silu: bool) -> None:
    if isinstance(act, nn.ReLU):
        return
    if isinstance(act, nn.SiLU) and allow_silu:  # the caller states the approximation once
        return
    raise ValueError(f"{name}: activation {type(act).__name__} cannot become a spiking neuron "
                     "(use ReLU, or allow_silu=True for SiLU)")


def _trace(model: nn.Module, blocks: dict[str, nn.Module],
           example: Tensor) -> tuple[list[str], dict[str, str]]:
    """One forward pass: the blocks in execution order, and the block feeding each max-pool.

    Outputs are matched by tensor identity (kept alive during the pass so ids stay unique); a
    pool fed by a pool (SPPF's chain) inherits that pool's producer.
    """
    order: list[str] = []
    producer: dict[int, tuple[Tensor, str | None]] = {}
    pool_sources: dict[str, set[str | None]] = {}

    def block_hook(name: str, output: Tensor) -> None:
        order.append(name)
        producer[id(output)] = (output, name)

    def pool_hook(name: str, x: Tensor, output: Tensor) -> None:
        source = producer.get(id(x), (x, None))[1]
        pool_sources.setdefault(name, set()).add(source)
        producer[id(output)] = (output, source)

    hooks = [block.register_forward_hook(lambda _m, _i, out, name=name: block_hook(name, out))
             for name, block in blocks.items()]
    hooks += [module.register_forward_hook(
        lambda _m, inputs, out, name=name: pool_hook(name, inputs[0], out))
        for name, module in model.named_modules() if isinstance(module, nn.MaxPool2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    sources = {}
    for name, found in pool_sources.items():
        if len(found) != 1 or None in found:
            raise ValueError(f"max-pool {name} must be fed by one conv block (or pool chain)")
        sources[name] = found.pop()
    return order, sources


def _folded_conv(block: nn.Module) -> nn.Conv2d:
    if isinstance(block.bn, nn.BatchNorm2d):
        return fold_bn(block.conv, block.bn)
    return copy.deepcopy(block.conv)


def convert_to_snn(ann: nn.Module, lambdas: dict[str, Tensor], coding: SpikeCoding,
                   engine: Engine = "fused", allow_silu: bool = False,
                   example_size: tuple[int, int] = (64, 64)) -> nn.Module:
    """A spiking copy of ann (ann is untouched): theta_l = lambda_l / L for every conv block.

    example_size is the spatial size of the one tracing pass that finds each max-pool's
    producer and the first conv block (which becomes the direct-input layer); it must be valid
    for the network (e.g. a multiple of its largest stride).
    """
    check_engine(engine)
    snn = copy.deepcopy(ann).eval()
    blocks = conv_blocks(snn)
    if not blocks:
        raise ValueError("no conv blocks (.conv, .bn, .act) found")
    for name, block in blocks.items():
        _check_activation(name, block.act, allow_silu)
        if name not in lambdas:
            raise KeyError(f"no calibrated lambda for conv block {name}")
    in_channels = next(m for m in snn.modules() if isinstance(m, nn.Conv2d)).in_channels
    device = next(snn.parameters()).device
    example = torch.zeros(1, in_channels, *example_size, device=device)
    order, pool_sources = _trace(snn, blocks, example)

    def theta(name: str) -> Tensor:
        return lambdas[name].to(device) / coding.L

    replacements: dict[str, nn.Module] = {
        name: SpikingConv(_folded_conv(block), theta(name), coding,
                          direct_input=name == order[0], engine=engine)
        for name, block in blocks.items()
    }
    inside_blocks = {f"{name}.conv" for name in blocks}
    for name, module in snn.named_modules():
        if isinstance(module, nn.MaxPool2d):
            replacements[name] = _spike_max_pool(name, module, theta(pool_sources[name]),
                                                 coding, engine)
        elif isinstance(module, nn.Upsample):
            replacements[name] = SpikeUpsample(_nearest_scale(name, module))
        elif isinstance(module, nn.Conv2d) and name not in inside_blocks:
            replacements[name] = OutputIntegrator(copy.deepcopy(module), coding, engine)
    for name, module in replacements.items():
        _carry_attributes(snn.get_submodule(name), module)
        snn.set_submodule(name, module)
    return snn


def _carry_attributes(old: nn.Module, new: nn.Module) -> None:
    """Keep the plain attributes a parent's forward may read (YOLOv5's layer index .i, .f).

    torch's own settings (listed in __constants__, e.g. MaxPool2d.ceil_mode) are left behind.
    """
    builtin = {name for cls in type(old).__mro__ for name in getattr(cls, "__constants__", ())}
    for key, value in vars(old).items():
        if not key.startswith("_") and key != "training" and key not in builtin \
                and not hasattr(new, key):
            setattr(new, key, value)


def _spike_max_pool(name: str, pool: nn.MaxPool2d, theta: Tensor, coding: SpikeCoding,
                    engine: Engine) -> SpikeMaxPool:
    if pool.dilation not in (1, (1, 1)) or pool.ceil_mode:
        raise ValueError(f"{name}: max-pool with dilation or ceil_mode is not supported")
    return SpikeMaxPool(pool.kernel_size, pool.stride, pool.padding, theta, coding, engine)


def _nearest_scale(name: str, upsample: nn.Upsample) -> int:
    scale = upsample.scale_factor
    scale = scale[0] if isinstance(scale, tuple) and len(set(scale)) == 1 else scale
    if upsample.mode != "nearest" or not isinstance(scale, int | float) or scale != int(scale):
        raise ValueError(f"{name}: only nearest upsampling by an integer factor is supported")
    return int(scale)
