"""Spiking core: STDI neurons, spiking layers, engines, energy accounting. No ROS imports."""

from suhd_ros.snn.coding import DEFAULT_F_C, DEFAULT_T, SpikeCoding
from suhd_ros.snn.convert import (
    calibrate_thresholds,
    conv_blocks,
    convert_to_snn,
    fold_batchnorm,
    fold_bn,
)
from suhd_ros.snn.energy import (
    E_AC,
    E_MAC,
    EnergyMeter,
    EnergyReport,
    FrameEnergy,
    LayerEnergy,
    energy_report,
)
from suhd_ros.snn.layers import (
    SPIKING_ENGINES,
    OutputIntegrator,
    SpikeMaxPool,
    SpikeProducer,
    SpikeUpsample,
    SpikingConv,
    SpikingLayer,
    reset_statistics,
    set_engine,
    set_statistics,
)
from suhd_ros.snn.neurons import SpikingNeuron, quantise, spikes_from_levels, stdi_fire

__all__ = [
    "DEFAULT_F_C",
    "DEFAULT_T",
    "E_AC",
    "E_MAC",
    "SPIKING_ENGINES",
    "EnergyMeter",
    "EnergyReport",
    "FrameEnergy",
    "LayerEnergy",
    "OutputIntegrator",
    "SpikeCoding",
    "SpikeMaxPool",
    "SpikeProducer",
    "SpikeUpsample",
    "SpikingConv",
    "SpikingLayer",
    "SpikingNeuron",
    "calibrate_thresholds",
    "conv_blocks",
    "convert_to_snn",
    "energy_report",
    "fold_batchnorm",
    "fold_bn",
    "quantise",
    "reset_statistics",
    "set_engine",
    "set_statistics",
    "spikes_from_levels",
    "stdi_fire",
]
