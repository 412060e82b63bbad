"""Spike statistics and energy estimates of a converted SNN (the paper's eq. 23).

Per frame and per layer: spikes (a burst of k counts k), spikes per neuron and step, synaptic
operations SOPs_l = spikes_l * fanout_l, the direct-input layer's MACs (p_in), the ANN's MACs, and
E_SNN = E_MAC * MACs_first + E_AC * SOPs against E_ANN = E_MAC * MACs_ANN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from suhd_ros.snn.layers import OutputIntegrator, SpikeProducer, SpikingConv, SpikingLayer

E_MAC = 4.6e-12  # J per 32-bit multiply-accumulate, 45 nm (Horowitz 2014)
E_AC = 0.9e-12  # J per 32-bit accumulate, 45 nm (Horowitz 2014)


@dataclass
class LayerEnergy:
    """One layer's figures for one frame. kind: "input", "conv", "max-pool" or "output".

    neurons: spiking neurons per frame (a layer called k times per frame counts k sets);
    fanout: synaptic operations per spike; macs: what the SNN pays in MACs (input layer only).
    """

    name: str
    kind: str
    neurons: int
    spikes: float
    spikes_per_neuron_step: float
    fanout: float
    sops: float
    macs: int
    ann_macs: int


@dataclass
class EnergyReport:
    """Per-frame totals and per-layer figures; frames is how many frames were averaged."""

    layers: list[LayerEnergy]
    T: int
    frames: int
    spikes: float
    sops: float
    macs_first: int
    macs_ann: int
    e_mac: float
    e_ac: float
    energy_snn: float
    energy_ann: float


@dataclass(frozen=True)
class FrameEnergy:
    """One frame's totals: what the node publishes and the tools write (no per-layer figures).

    Typed, so a misspelt figure is an AttributeError, never a silent NaN.
    """

    spikes: float
    spikes_per_neuron_step: float
    sops: float
    macs_first_layer: float
    macs_ann: float
    energy_snn_j: float
    energy_ann_j: float

    @classmethod
    def from_report(cls, report: EnergyReport) -> FrameEnergy:
        neurons = sum(layer.neurons for layer in report.layers)
        return cls(
            spikes=report.spikes,
            spikes_per_neuron_step=report.spikes / (neurons * report.T) if neurons else 0.0,
            sops=report.sops,
            macs_first_layer=float(report.macs_first),
            macs_ann=float(report.macs_ann),
            energy_snn_j=report.energy_snn,
            energy_ann_j=report.energy_ann,
        )

    @classmethod
    def mean(cls, frames: Sequence[FrameEnergy]) -> FrameEnergy:
        """Each figure averaged over frames (at least one)."""
        if not frames:
            raise ValueError("no frames to average")
        return cls(**{f.name: sum(getattr(e, f.name) for e in frames) / len(frames)
                      for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class _Node:
    """What the graph alone fixes for one layer at one input size."""

    kind: str
    neurons: int
    fanout: float
    macs: int


def _conv_of(layer: nn.Module) -> nn.Conv2d | None:
    return layer.conv if isinstance(layer, SpikingConv | OutputIntegrator) else None


def _receives_spikes(layer: nn.Module) -> bool:
    return _conv_of(layer) is not None and not getattr(layer, "direct_input", False)


def _synapses_per_input(conv: nn.Conv2d) -> float:
    """Fan-out of one input value of a conv: C_out / groups * k_h * k_w / (s_h * s_w)."""
    k_h, k_w = conv.kernel_size
    s_h, s_w = conv.stride
    return conv.out_channels / conv.groups * k_h * k_w / (s_h * s_w)


def _macs(conv: nn.Conv2d, out_shape: torch.Size) -> int:
    k_h, k_w = conv.kernel_size
    return conv.in_channels // conv.groups * k_h * k_w * out_shape.numel()


def _kind(layer: nn.Module) -> str:
    if isinstance(layer, OutputIntegrator):
        return "output"
    if isinstance(layer, SpikingConv):
        return "input" if layer.direct_input else "conv"
    return "max-pool"


class _Probe:
    """Fan-outs from the graph, by linearity of everything between spiking layers.

    One forward pass in which every producer l emits a_l everywhere (a_l = 1, a leaf of
    autograd), and each spike-fed conv c adds synapses_per_input_c * sum(its input) to a total
    R. Between spiking layers there is only concat (passes values), residual add (merges them)
    and nearest upsampling by s (copies each s * s times); a max-pool stops them, since its own
    spikes are counted as its own. So R is linear in the a_l, and one backward pass gives
    dR/da_l = the synapses l's values reach, for every l at once:
    fanout_l = dR/da_l / neurons_l. Each layer's own input is detached, so autograd records
    only the glue between layers, not the convolutions.
    """

    def __init__(self, snn: nn.Module) -> None:
        self.snn = snn
        self.layers = {n: m for n, m in snn.named_modules() if isinstance(m, SpikingLayer)}
        # producer name -> its index in emit
        self.producers = {n: i for i, n in enumerate(
            n for n, m in self.layers.items() if isinstance(m, SpikeProducer))}
        self.emit = torch.ones(len(self.producers), dtype=torch.float64, requires_grad=True)
        self.reached: torch.Tensor | None = None  # R
        self.shapes: dict[str, torch.Size] = {}
        self.emitted: dict[str, int] = {}

    def _on_output(self, name: str, output: torch.Tensor) -> torch.Tensor | None:
        self.shapes[name] = output.shape[1:]
        self.emitted[name] = self.emitted.get(name, 0) + output[0].numel()
        if name in self.producers:
            level = self.emit[self.producers[name]].to(output.dtype)
            return level * torch.ones_like(output)
        return None

    def _on_input(self, name: str, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = inputs[0]
        if _receives_spikes(self.layers[name]):
            arrived = x.sum(dtype=torch.float64) * _synapses_per_input(_conv_of(self.layers[name]))
            self.reached = arrived if self.reached is None else self.reached + arrived
        return (x.detach(), *inputs[1:])

    def run(self, input_shape: tuple[int, ...]) -> dict[str, _Node]:
        saved = {m: (m.engine, getattr(m, "record_statistics", None))
                 for m in self.layers.values()}
        trained = [p for p in self.snn.parameters() if p.requires_grad]
        hooks = []
        for name, layer in self.layers.items():
            layer.engine = "fused"
            if isinstance(layer, SpikeProducer):
                layer.record_statistics = False
            hooks.append(layer.register_forward_hook(
                lambda _m, _i, out, name=name: self._on_output(name, out)))
            hooks.append(layer.register_forward_pre_hook(
                lambda _m, inputs, name=name: self._on_input(name, inputs)))
        try:
            for parameter in trained:
                parameter.requires_grad_(False)
            return self._probe_all(input_shape)
        finally:
            for hook in hooks:
                hook.remove()
            for parameter in trained:
                parameter.requires_grad_(True)
            for layer, (engine, record) in saved.items():
                layer.engine = engine
                if record is not None:
                    layer.record_statistics = record

    def _probe_all(self, input_shape: tuple[int, ...]) -> dict[str, _Node]:
        device = next(self.snn.buffers()).device
        with torch.enable_grad():
            self.snn(torch.zeros(1, *input_shape[-3:], device=device))
            reached = (torch.autograd.grad(self.reached, self.emit)[0].tolist()
                       if self.reached is not None else [0.0] * len(self.producers))
        fanouts = {name: r / self.emitted[name] for name, r in zip(self.producers, reached,
                                                                    strict=True)
                   if name in self.emitted}
        return {name: self._node(name, layer, self.emitted[name], fanouts.get(name, 0.0))
                for name, layer in self.layers.items() if name in self.shapes}

    def _node(self, name: str, layer: nn.Module, emitted: int, fanout: float) -> _Node:
        conv = _conv_of(layer)
        neurons = emitted if isinstance(layer, SpikeProducer) else 0
        macs = 0 if conv is None else _macs(conv, self.shapes[name])
        return _Node(_kind(layer), neurons, fanout, macs)


class EnergyMeter:
    """Energy reports of one SNN from its recorded spike counts; the graph probe is cached per
    input size (it costs one forward and one backward pass, once)."""

    def __init__(self, snn: nn.Module, e_mac: float = E_MAC, e_ac: float = E_AC) -> None:
        self.snn = snn
        self.e_mac = e_mac
        self.e_ac = e_ac
        self._graphs: dict[tuple[int, ...], dict[str, _Node]] = {}
        self._layers: dict[str, SpikingLayer] | None = None

    def graph(self, input_shape: tuple[int, ...]) -> dict[str, _Node]:
        key = tuple(input_shape[-3:])
        if key not in self._graphs:
            self._graphs[key] = _Probe(self.snn).run(key)
        return self._graphs[key]

    def report(self, input_shape: tuple[int, ...], sample: int | None = None) -> EnergyReport:
        """Figures per frame: the mean over all frames since the last reset_statistics, or
        sample i of the batch (summed over the passes since the reset, so reset before the
        pass you want). input_shape: (C, H, W) or (N, C, H, W)."""
        graph = self.graph(input_shape)
        modules = self._spiking_layers()
        coding = next(iter(modules.values())).coding
        producers = [name for name in graph if isinstance(modules[name], SpikeProducer)]
        frames = 1 if sample is not None else self._frames([modules[n] for n in producers])
        spikes = dict(zip(producers, self._spikes([modules[n] for n in producers], sample,
                                                  frames), strict=True))
        layers = [self._layer(name, node, spikes.get(name, 0.0), coding.T)
                  for name, node in graph.items()]
        sops = sum(layer.sops for layer in layers)
        macs_first = sum(layer.macs for layer in layers)
        macs_ann = sum(layer.ann_macs for layer in layers)
        return EnergyReport(
            layers=layers, T=coding.T, frames=frames,
            spikes=sum(layer.spikes for layer in layers), sops=sops,
            macs_first=macs_first, macs_ann=macs_ann, e_mac=self.e_mac, e_ac=self.e_ac,
            energy_snn=self.e_mac * macs_first + self.e_ac * sops,
            energy_ann=self.e_mac * macs_ann)

    def reset(self) -> None:
        """Clear the spike counts of every layer that fires (reset_statistics without the
        walk over all modules: the node does this every counted frame)."""
        for layer in self._spiking_layers().values():
            if isinstance(layer, SpikeProducer):
                layer.reset_statistics()

    def _spiking_layers(self) -> dict[str, SpikingLayer]:
        """The SNN's spiking layers by name, found once (a walk of the modules per report
        cost as much as the rest of it)."""
        if self._layers is None:
            self._layers = {n: m for n, m in self.snn.named_modules()
                            if isinstance(m, SpikingLayer)}
        return self._layers

    @staticmethod
    def _frames(producers: list[SpikeProducer]) -> int:
        """Frames seen since reset: a layer called k times per frame counts k samples each."""
        samples = [layer.samples for layer in producers]
        if not samples or min(samples) == 0:
            raise ValueError("no spike statistics: run forward passes with statistics on "
                             "after reset_statistics")
        return min(samples)

    @staticmethod
    def _spikes(producers: list[SpikeProducer], sample: int | None, frames: int) -> list[float]:
        """Spikes per frame of each producer, summed in one operation for all of them."""
        if sample is None:
            counts = [layer.total_counts for layer in producers]
        elif any(layer.spike_counts is None for layer in producers):
            raise ValueError("no spike statistics recorded")
        else:
            counts = [layer.spike_counts[sample] for layer in producers]
        if not counts:
            return []
        return (torch.stack(counts).sum(dim=1).double() / frames).tolist()

    @staticmethod
    def _layer(name: str, node: _Node, spikes: float, T: int) -> LayerEnergy:
        return LayerEnergy(
            name=name, kind=node.kind, neurons=node.neurons, spikes=spikes,
            spikes_per_neuron_step=spikes / (node.neurons * T) if node.neurons else 0.0,
            fanout=node.fanout, sops=spikes * node.fanout,
            macs=node.macs if node.kind == "input" else 0, ann_macs=node.macs)


def energy_report(snn: nn.Module, input_shape: tuple[int, ...], sample: int | None = None,
                  e_mac: float = E_MAC, e_ac: float = E_AC) -> EnergyReport:
    """One-off report after forward passes (see EnergyMeter to reuse the graph probe)."""
    return EnergyMeter(snn, e_mac, e_ac).report(input_shape, sample)
