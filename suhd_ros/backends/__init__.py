"""Deployment backends: the network as a plain ONNX graph (`onnx_export`) and the runtimes that
run it behind `Detector` (`runtimes`: ONNX Runtime, OpenVINO).

One package, because the two are one concern: a runtime backend builds (and caches) its ONNX
file from the model file on the fly, with the same export that `suhd-export` writes. The
runtimes are optional dependencies (requirements/backends.txt), imported only when asked for.
"""
