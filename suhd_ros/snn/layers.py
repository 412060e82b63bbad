"""Spiking layers and the two engines that run them.

Flowing tensors (docs/architecture.md): `reference` passes trains x [T, N, C, H, W] with
x[t] = theta * s(t); `fused` passes decoded values a [N, C, H, W] = sum_t tau(t) x[t].
The first layer takes the analog image [N, C, H, W] in both engines. Concat (dim=-3) and residual
add act on either tensor unchanged, so they need no module.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from suhd_ros.snn.coding import SpikeCoding
from suhd_ros.snn.neurons import SpikingNeuron, spikes_from_levels, stdi_fire

Engine = Literal["reference", "fused"]
SPIKING_ENGINES: tuple[Engine, ...] = ("fused", "reference")


def check_engine(engine: str) -> Engine:
    if engine not in SPIKING_ENGINES:
        raise ValueError(f"engine must be one of {SPIKING_ENGINES}, got {engine!r}")
    return engine  # type: ignore[return-value]


def level_spike_table(coding: SpikeCoding) -> Tensor:
    """Spikes per step that each level 0..L sends: [L+1, T] (int64)."""
    return spikes_from_levels(torch.arange(coding.L + 1), coding).T.contiguous()


PAIR_BINS_LIMIT = 2**16  # histogram bins for pairs of levels, (L+1)^2: L <= 255


def level_spike_counts(n: Tensor, coding: SpikeCoding, table: Tensor | None = None) -> Tensor:
    """Spikes per sample and step [N, T] (int64) of levels n [N, ...] (float, or uint8 from a
    graph), as the neurons send them.

    Equal to summing `spikes_from_levels(n)` but cheaper: an integer histogram of the levels per
    sample (`level_histogram`) times the spikes each level sends per step (`table`,
    `level_spike_table`). Levels are read in memory order, so a channels-last tensor is not
    copied. The cost does not grow with T.
    """
    table = level_spike_table(coding).to(n.device) if table is None else table
    order = sorted(range(1, n.dim()), key=lambda d: -n.stride(d))
    hist = level_histogram(n.permute(0, *order).reshape(n.shape[0], -1), coding.L + 1)
    return (hist.unsqueeze(-1) * table).sum(dim=1)  # no int64 matmul on CUDA


def level_histogram(flat: Tensor, size: int) -> Tensor:
    """How often each level 0..size-1 occurs in each row of flat [N, K]: [N, size] (int64).

    Its cost is per element counted (bincount's), so float levels with a small L are paired:
    each level a of a row's first half with a level b of its second, counted as one element
    a size + b (exact in float32; half the elements, for one elementwise pass over contiguous
    halves), and the pairs' histogram summed back to the levels'. uint8 levels (a graph's) are
    paired without arithmetic, by reading each two bytes as one int16 (`_byte_pair_histogram`).
    """
    if flat.dtype == torch.uint8:
        return torch.stack([_byte_pair_histogram(row, size) for row in flat])
    pairs = size * size <= PAIR_BINS_LIMIT
    odd = flat[:, -1] if pairs and flat.shape[1] % 2 else None  # an odd row's last level
    if pairs:
        half = flat.shape[1] // 2
        flat = torch.add(flat[:, half:2 * half], flat[:, :half], alpha=size)
    bins = size * size if pairs else size
    index = flat.to(torch.int32)
    if flat.shape[0] > 1:
        offsets = torch.arange(flat.shape[0], device=flat.device, dtype=torch.int32) * bins
        index = index + offsets[:, None]
    hist = torch.bincount(index.view(-1), minlength=flat.shape[0] * bins).view(-1, bins)
    if not pairs:
        return hist
    hist = hist.view(-1, size, size)  # how often each level occurs in either half
    hist = hist.sum(dim=2) + hist.sum(dim=1)
    if odd is not None:
        hist[torch.arange(hist.shape[0], device=hist.device), odd.long()] += 1
    return hist


def _byte_pair_histogram(row: Tensor, size: int) -> Tensor:
    """How often each level 0..size-1 occurs in a 1-D uint8 tensor of levels: [size] (int64).

    Two neighbouring bytes a, b read as one int16 are the index a + 256 b (b + 256 a on a
    big-endian machine: either way one level indexes the row, the other the column of a
    [size, 256] table, so summing it both ways counts both). Half the elements and no copy:
    measured 2.3 ms against 4.4 ms for a frame's 5.1 M levels. Levels of 128 and more would
    set int16's sign bit, so a larger size, or a row that starts at an odd byte, counts bytes.
    """
    if size > 128 or row.numel() < 2 or row.storage_offset() % 2:
        return torch.bincount(row, minlength=size)
    even = row.numel() // 2 * 2
    table = torch.bincount(row[:even].view(torch.int16), minlength=256 * size).view(size, 256)
    hist = table.sum(dim=1) + table.sum(dim=0)[:size]
    if even < row.numel():
        hist[row[-1].long()] += 1
    return hist


def integrate(conv: nn.Conv2d, x: Tensor, coding: SpikeCoding, engine: Engine) -> Tensor:
    """Accumulation phase of a conv fed by spikes: V = sum_t tau(t) W x[t] + b, shape [N, C, H, W].

    `reference` convolves every step (the T steps batched into one call); `fused` uses the
    linearity of W and convolves the decoded input once.
    """
    if engine == "fused":
        _expect_dims(x, 4, engine)
        return conv(x)
    _expect_dims(x, 5, engine)
    y = F.conv2d(x.flatten(0, 1), conv.weight, None, conv.stride, conv.padding, conv.dilation,
                 conv.groups)
    V = coding.decode(y.unflatten(0, x.shape[:2]), inplace=True)
    return V if conv.bias is None else V.add_(conv.bias.view(-1, 1, 1))


def _expect_dims(x: Tensor, dims: int, engine: Engine) -> None:
    if x.dim() != dims:
        raise ValueError(f"the {engine} engine expects {dims}-D tensors, got {tuple(x.shape)}")


def _check_conv(conv: nn.Conv2d) -> nn.Conv2d:
    if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros":
        raise ValueError("expected an nn.Conv2d with zero padding")
    return conv


class SpikingLayer(nn.Module):
    """A layer whose computation depends on the engine; `set_engine` switches all of them."""

    def __init__(self, coding: SpikeCoding, engine: Engine) -> None:
        super().__init__()
        self.coding = coding
        self.engine = check_engine(engine)


@dataclass(slots=True)
class SpikeTally:
    """One layer's spike counts since the last reset. A plain object, not module attributes:
    it is updated on every call of every layer that fires, and nn.Module's attribute hooks
    made that cost more than the counts' own arithmetic. Counts computed on another thread
    wait in `pending` (in call order) until something reads them."""

    per_sample: Tensor | None = None  # [N, T]
    total: Tensor | None = None  # [T]
    samples: int = 0
    pending: list[Future[Tensor]] = field(default_factory=list)

    def add(self, counts: Tensor) -> None:
        same_batch = self.per_sample is not None and self.per_sample.shape == counts.shape
        self.per_sample = self.per_sample + counts if same_batch else counts
        total = counts.sum(dim=0)
        self.total = total if self.total is None else self.total.to(total.device) + total
        self.samples += counts.shape[0]

    def settle(self) -> SpikeTally:
        """Wait for the pending counts and add them; returns self."""
        pending, self.pending = self.pending, []
        for future in pending:
            self.add(future.result())
        return self

    def reset(self) -> None:
        self.per_sample, self.total, self.samples, self.pending = None, None, 0, []


class SpikeProducer(SpikingLayer):
    """A layer that fires: it owns its neurons (and so theta) and counts their spikes per
    sample and step.

    Since the last `reset_statistics`: `spike_counts` [N, T] (int64) sums the spikes of each
    sample of the batch (a batch of another size starts it anew), `total_counts` [T] sums over
    all samples, and `samples` counts them. A module called k times per frame (SPPF's pool)
    counts k samples per frame; its spikes all count.
    """

    def __init__(self, theta: float | Tensor, coding: SpikeCoding, engine: Engine) -> None:
        super().__init__(coding, engine)
        self.neuron = SpikingNeuron(theta, coding)
        self.register_buffer("level_spikes", level_spike_table(coding), persistent=False)
        self.record_statistics = True
        self.tally = SpikeTally()
        self.counter: Executor | None = None  # where the fused engine's histograms run

    @property
    def theta(self) -> Tensor:
        return self.neuron.theta

    @property
    def spike_counts(self) -> Tensor | None:
        return self.tally.settle().per_sample

    @property
    def total_counts(self) -> Tensor:
        total = self.tally.settle().total
        return torch.zeros(self.coding.T, dtype=torch.int64) if total is None else total

    @property
    def samples(self) -> int:
        return self.tally.settle().samples

    def reset_statistics(self) -> None:
        self.tally.reset()

    def _emit_spikes(self, spikes: Tensor) -> Tensor:
        """reference engine: spikes [T, N, C, H, W] -> the train theta * s(t)."""
        if self.record_statistics:
            self._record(spikes.flatten(2).sum(dim=-1).T.round().long())
        return spikes.mul_(self.theta)

    def _emit_levels(self, n: Tensor) -> Tensor:
        """fused engine: levels [N, C, H, W] -> the decoded value theta * n (into n, unless n
        is counted on another thread)."""
        if self.record_statistics and self.record_levels(n):
            return n * self.theta
        return n.mul_(self.theta)

    def record_levels(self, n: Tensor) -> bool:
        """Count the spikes of levels n now, or on `counter` (then True: n must stay as it is
        until it is counted)."""
        if self.counter is None:
            self._record(level_spike_counts(n, self.coding, self.level_spikes))
            return False
        self.tally.pending.append(
            self.counter.submit(level_spike_counts, n, self.coding, self.level_spikes))
        return True

    def _record(self, counts: Tensor) -> None:
        self.tally.add(counts)


class SpikingConv(SpikeProducer):
    """Conv (BN folded) + SUHD neurons: the spiking form of a conv-BN-ReLU block.

    With direct_input the layer takes the analog image [N, C, H, W] once, in both engines: its
    membrane is charged with V = W x + b (no spikes, so no tau weighting).
    """

    def __init__(self, conv: nn.Conv2d, theta: float | Tensor, coding: SpikeCoding,
                 direct_input: bool = False, engine: Engine = "fused") -> None:
        super().__init__(theta, coding, engine)
        self.conv = _check_conv(conv)
        self.direct_input = direct_input

    def forward(self, x: Tensor) -> Tensor:
        if self.direct_input:
            _expect_dims(x, 4, self.engine)
            V = self.conv(x)
        else:
            V = integrate(self.conv, x, self.coding, self.engine)
        if self.engine == "fused":
            return self._emit_levels(self.neuron.level(V, inplace=True))
        spikes = self.neuron(V)
        self.neuron.reset()  # temporal separation: nothing carries over to the next frame
        return self._emit_spikes(spikes)


class SpikeMaxPool(SpikeProducer):
    """Spike-MaxPool by membrane potential, theta_out = theta_in = theta (the producer's).

    The paper's five stages: (1) accumulate U_in = sum_t tau(t) s_in(t); (2) V_r = theta U_in;
    (3) max over each window; (4) U_out = V_r / theta; (5) fire U_out with STDI. With one theta,
    (2) and (4) cancel, so we pool the integer U_in directly (exact, no float round trip) and
    fire it in units of theta. Padding is -inf inside max_pool2d, so it never wins. The result is
    max-pooling of the decoded values, which is lossless. A comparison, so it costs no synaptic
    operations; its own output spikes are counted like any layer's.
    """

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None,
                 padding: int | tuple[int, int], theta: float | Tensor, coding: SpikeCoding,
                 engine: Engine = "fused") -> None:
        super().__init__(theta, coding, engine)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def _pool(self, u: Tensor) -> Tensor:
        return F.max_pool2d(u, self.kernel_size, self.stride, self.padding)

    def _input_spikes(self, x: Tensor) -> Tensor:
        """Integer spike counts (or levels) of the input; round removes theta's float error."""
        return torch.round(x / self.theta)

    def forward(self, x: Tensor) -> Tensor:
        if self.engine == "reference":
            _expect_dims(x, 5, self.engine)
            u_in = self.coding.decode(self._input_spikes(x))
            return self._emit_spikes(stdi_fire(self._pool(u_in), 1.0, self.coding))
        _expect_dims(x, 4, self.engine)
        pooled = self._pool(x)  # max-pooling theta * n picks one of the inputs: exact
        if self.record_statistics:
            self.record_levels(self._input_spikes(pooled))
        return pooled


class SpikeUpsample(nn.Module):
    """Nearest upsampling by an integer factor; works on trains and decoded values alike.

    One nearest-neighbour interpolate (an ONNX Resize): exported as repeat_interleave, the
    upsampling left every later tensor without a known rank, and the exporter then turned the
    Detect head's dim=-1 into axis 3 (a file ONNX Runtime refused).
    """

    def __init__(self, scale_factor: int) -> None:
        super().__init__()
        if int(scale_factor) != scale_factor or scale_factor < 1:
            raise ValueError(f"scale_factor must be a positive integer, got {scale_factor!r}")
        self.scale_factor = int(scale_factor)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 5:  # a train [T, N, C, H, W]
            return self(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        return F.interpolate(x, scale_factor=self.scale_factor, mode="nearest")


class OutputIntegrator(SpikingLayer):
    """Output layer (Detect's 1x1 convs): integrates the weighted input, never fires.

    Returns the analog potential [N, C, H, W] in both engines ("output decompression").
    """

    def __init__(self, conv: nn.Conv2d, coding: SpikeCoding, engine: Engine = "fused") -> None:
        super().__init__(coding, engine)
        self.conv = _check_conv(conv)

    def forward(self, x: Tensor) -> Tensor:
        return integrate(self.conv, x, self.coding, self.engine)


def set_engine(net: nn.Module, engine: Engine) -> nn.Module:
    """Switch every spiking layer of net to the given engine; returns net."""
    engine = check_engine(engine)
    for module in net.modules():
        if isinstance(module, SpikingLayer):
            module.engine = engine
    return net


def set_statistics(net: nn.Module, enabled: bool) -> nn.Module:
    """Turn spike counting on or off in every layer that fires (off: fastest fused engine)."""
    for module in net.modules():
        if isinstance(module, SpikeProducer):
            module.record_statistics = enabled
    return net


def set_counter(net: nn.Module, counter: Executor | None) -> nn.Module:
    """Where the fused engine's spike histograms run: on `counter` (a one-thread pool: they run
    beside the next layers' convolutions, on another core), or in each layer's call (None)."""
    for module in net.modules():
        if isinstance(module, SpikeProducer):
            module.counter = counter
    return net


def reset_statistics(net: nn.Module) -> nn.Module:
    """Clear the spike counts of every layer that fires."""
    for module in net.modules():
        if isinstance(module, SpikeProducer):
            module.reset_statistics()
    return net
