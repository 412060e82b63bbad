"""Import an Ultralytics YOLOv5 ``.pt`` checkpoint without yolov5 installed and without running
any code from the file.

A ``.pt`` file is a zip written by ``torch.save``: ``<archive>/data.pkl`` (a pickle of a dict
holding the pickled ``DetectionModel`` module tree) plus one raw file per tensor storage. We read
the pickle with our own unpickler whose ``find_class`` hands out only tensor rebuilders, plain
containers, dtypes, and inert placeholder classes that merely record the state of YOLOv5 / torch.nn
module objects. Any other global (``os.system``, ``builtins.exec``, ``functools.partial`` ...) is
refused before it can be called.
"""

import _compat_pickle
import copy
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from suhd_ros.yolo.blocks import ACTIVATIONS
from suhd_ros.yolo.model import YOLOv5, load_checked_state_dict

# module prefixes whose classes become inert placeholders (module tree and training metadata)
_INERT_MODULE_PREFIXES = ("models.yolo.", "models.common.", "torch.nn.modules.")
_INERT_GLOBALS = frozenset({
    # numpy values in checkpoint metadata (e.g. best_fitness); never rebuilt for real
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.ndarray", "numpy.dtype",
    "argparse.Namespace", "pathlib.PosixPath", "pathlib.WindowsPath",
})
# older YOLOv5 code kept Detect.anchor_grid (anchors * stride) as a buffer; we recompute it
_DERIVED_BUFFERS = frozenset({"anchor_grid"})
_DETECTION_MODEL_CLASSES = ("models.yolo.Model", "models.yolo.DetectionModel")
_BATCHNORM_CLASS = "torch.nn.modules.batchnorm.BatchNorm2d"
# Ceilings checked on the zip's declared sizes before anything is inflated. torch.save stores
# members uncompressed, so a member that inflates more than this is a decompression bomb, not a
# checkpoint (float weights deflate by about 1.1x); and a YOLOv5 training checkpoint (model, EMA
# and optimizer state of the largest variant) holds far less than the byte ceiling.
MAX_INFLATION_RATIO = 20
MAX_CHECKPOINT_BYTES = 4 << 30
# what a damaged archive or pickle raises inside zipfile / pickle / torch while it is read
_DAMAGED_FILE_ERRORS = (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zlib.error,
                        struct.error, ValueError, TypeError, IndexError, KeyError,
                        AttributeError, RuntimeError, OverflowError, RecursionError,
                        UnicodeDecodeError)
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "torch.HalfStorage": torch.float16,
    "torch.FloatStorage": torch.float32,
    "torch.DoubleStorage": torch.float64,
    "torch.BFloat16Storage": torch.bfloat16,
    "torch.LongStorage": torch.int64,
    "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16,
    "torch.CharStorage": torch.int8,
    "torch.ByteStorage": torch.uint8,
    "torch.BoolStorage": torch.bool,
    "torch.UntypedStorage": torch.uint8,
}
_DTYPES: dict[str, torch.dtype] = {
    f"torch.{name}": getattr(torch, name)
    for name in ("float16", "float32", "float64", "bfloat16", "half", "float", "double",
                 "int64", "int32", "int16", "int8", "uint8", "bool", "long", "int")
}


class CheckpointImportError(ValueError):
    """The file is not a YOLOv5 checkpoint we can import."""


class UnsafeCheckpointError(CheckpointImportError):
    """The pickle names a global that could run code; nothing from it was called."""


class Placeholder:
    """Stands in for a class from the checkpoint: records constructor args and pickled state."""

    qualname = ""
    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<placeholder {self.qualname}>"


@dataclass(frozen=True)
class _StorageType:
    dtype: torch.dtype


@dataclass
class ImportedCheckpoint:
    description: dict
    names: list[str]
    state_dict: dict[str, torch.Tensor]
    activation: str


def _int_tuple(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or not all(
            type(v) is int and v >= 0 for v in values):
        raise CheckpointImportError(
            f"tensor {what} must be non-negative integers, got {values!r:.80}")
    return tuple(values)


def _rebuild_tensor_v2(
    storage: torch.Tensor, storage_offset: int, size: tuple, stride: tuple, *_: Any
) -> torch.Tensor:
    """A view of a storage, checked to lie inside it (the pickle chooses every number)."""
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if not isinstance(storage, torch.Tensor) or type(storage_offset) is not int \
            or len(size) != len(stride) or not 0 <= storage_offset <= storage.numel():
        raise CheckpointImportError("malformed tensor record in the checkpoint")
    if all(size):
        end = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
        if end > storage.numel():
            raise CheckpointImportError(
                f"a tensor of size {list(size)} reaches element {end} of a storage of "
                f"{storage.numel()}: the checkpoint is damaged")
    return torch.as_strided(storage, size, stride, storage_offset)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Protocol 2 writes bytes as _codecs.encode(text, "latin1"); allow exactly that."""
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafeCheckpointError(f"unexpected _codecs.encode call with {encoding!r}")
    return text.encode("latin1")


_REBUILDERS: dict[str, Callable[..., Any]] = {
    "_codecs.encode": _latin1_bytes,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "torch.Size": torch.Size,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler of a torch zip archive's data.pkl that never resolves an unvetted global."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(archive.open(f"{prefix}data.pkl"))
        self._archive = archive
        self._prefix = prefix
        self._placeholders: dict[str, type[Placeholder]] = {}
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 records Python 2 names (__builtin__.set); translate them as pickle does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        for table in (_REBUILDERS, _DTYPES):
            if full in table:
                return table[full]
        if full in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[full])
        if full in _INERT_GLOBALS or full.startswith(_INERT_MODULE_PREFIXES):
            return self._placeholder(full)
        raise UnsafeCheckpointError(
            f"refusing to load global {full!r} from the checkpoint: it is not a tensor, a plain "
            "container or a YOLOv5/torch.nn module class, and could execute code"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and type(pid[4]) is int and pid[4] >= 0):
            raise CheckpointImportError(f"unexpected persistent id in the checkpoint: {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            self._storages[key] = self._read_storage(str(key), storage_type.dtype, numel)
        return self._storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """A storage as a flat tensor of ``numel`` elements (little-endian, as torch writes),
        read into one buffer of its declared size after that size was checked."""
        try:
            info = self._archive.getinfo(f"{self._prefix}data/{key}")
        except KeyError:
            raise CheckpointImportError(f"storage {key} is missing from the archive") from None
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if info.file_size != nbytes:
            raise CheckpointImportError(f"storage {key} holds {info.file_size} bytes but the "
                                        f"pickle asks for {nbytes}: the checkpoint is damaged")
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        view = buffer.numpy()
        with self._archive.open(info) as member:
            done = 0
            while done < nbytes:
                chunk = member.read(min(1 << 20, nbytes - done))
                if not chunk:
                    raise CheckpointImportError(f"storage {key} is truncated")
                view[done:done + len(chunk)] = memoryview(chunk)
                done += len(chunk)
        return buffer.view(dtype)

    def _placeholder(self, full: str) -> type[Placeholder]:
        if full not in self._placeholders:
            name = full.rsplit(".", 1)[-1]
            self._placeholders[full] = type(name, (Placeholder,), {"qualname": full})
        return self._placeholders[full]


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointImportError("not a torch.save archive: expected one <name>/data.pkl")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = f"{prefix}byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).decode().strip() != "little":
        raise CheckpointImportError("big-endian checkpoints are not supported")
    return prefix


def _check_declared_sizes(archive: zipfile.ZipFile) -> None:
    """Refuse a decompression bomb from the zip directory alone, before inflating anything."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        if (info.compress_type != zipfile.ZIP_STORED
                and info.file_size > MAX_INFLATION_RATIO * max(info.compress_size, 1)):
            raise CheckpointImportError(
                f"member {info.filename} inflates {info.compress_size} bytes to "
                f"{info.file_size} (more than {MAX_INFLATION_RATIO}x): refused as a "
                "decompression bomb (torch.save does not compress)")
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointImportError(f"the archive declares {total} bytes, more than the "
                                    f"{MAX_CHECKPOINT_BYTES} a YOLOv5 checkpoint could need")


def load_checkpoint_safely(path: str | Path) -> Any:
    """Unpickle a torch.save zip with only vetted globals; module objects become placeholders.

    Every way the file can be unreadable (damaged zip or pickle, a bomb, a hostile global) is a
    CheckpointImportError naming the file, never a traceback from zipfile, pickle or torch.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointImportError(
            f"{path} is not a zip-format torch checkpoint (legacy or foreign formats are refused)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            _check_declared_sizes(archive)
            return _RestrictedUnpickler(archive, _archive_prefix(archive)).load()
    except CheckpointImportError as e:
        raise type(e)(f"{path}: {e}") from None
    except _DAMAGED_FILE_ERRORS as e:
        raise CheckpointImportError(
            f"{path}: damaged checkpoint ({type(e).__name__}: {str(e)[:160]})") from None


def _state_of(node: Any) -> dict:
    if not isinstance(node, Placeholder) or not isinstance(node.state, dict):
        raise CheckpointImportError(f"expected a pickled module, found {node!r}")
    return node.state


def _collect_tensors(node: Placeholder, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Rebuild ``state_dict()`` of a placeholder module tree, in torch's own key order."""
    state = _state_of(node)
    skip = set(state.get("_non_persistent_buffers_set") or ()) | _DERIVED_BUFFERS
    for kind in ("_parameters", "_buffers"):
        for name, tensor in (state.get(kind) or {}).items():
            if tensor is not None and not (kind == "_buffers" and name in skip):
                out[prefix + name] = tensor
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _collect_tensors(child, f"{prefix}{name}.", out)


def _guess_activation(classes: set[str], description: dict) -> str:
    """The activation named by the module classes, else by the description's activation key."""
    found = {c.rsplit(".", 1)[-1] for c in classes if c.startswith("torch.nn.modules.activation")}
    if not found:
        hint = str(description.get("activation", description.get("act", ""))).lower()
        found = {a for a in ("ReLU", "SiLU") if a.lower() in hint}
    if len(found) != 1 or next(iter(found)).lower() not in ACTIVATIONS:
        raise CheckpointImportError(
            f"cannot use activation(s) {sorted(found) or 'none found'}; supported: {ACTIVATIONS}"
        )
    return next(iter(found)).lower()


def _json_clean(value: Any) -> Any:
    """Tuples to lists so the description survives a JSON round trip unchanged."""
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    return copy.deepcopy(value)


def _names_list(names: Any, nc: int) -> list[str]:
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list | tuple) or len(names) != nc:
        return [f"class{i}" for i in range(nc)]
    return [str(n) for n in names]


def _batchnorm_settings(modules: list[tuple[str, dict]]) -> dict[str, float]:
    """The BN layers' eps and momentum as description keys; one value per model, since that is
    what our blocks (and YOLOv5's initialize_weights) use: several eps values are refused."""
    layers = [state for state in modules if state[0] == _BATCHNORM_CLASS]
    settings = {}
    for key, attribute in (("bn_eps", "eps"), ("bn_momentum", "momentum")):
        values = {state.get(attribute) for _, state in layers}
        if len(values) > 1:
            raise CheckpointImportError(
                f"its BatchNorm layers use {len(values)} different {attribute} values "
                f"({sorted(map(str, values))[:4]}); one value per model is supported")
        if values:
            settings[key] = values.pop()
    return settings


def _module_states(node: Placeholder) -> list[tuple[str, dict]]:
    """(class name, pickled state) of a placeholder module and all its descendants."""
    found = [(node.qualname, _state_of(node))]
    for child in (found[0][1].get("_modules") or {}).values():
        if child is not None:
            found += _module_states(child)
    return found


def _explicit_anchors(description: dict, modules: list[tuple[str, dict]], tensors: dict) -> None:
    """Ultralytics' ``anchors: 3`` means 'three per level, found by AutoAnchor': the real ones
    are the Detect layer's ``anchors`` buffer (grid units) times its stride, so write those."""
    count = description.get("anchors")
    if not isinstance(count, int) or isinstance(count, bool):
        return
    grids = [t for key, t in tensors.items() if key.endswith(".anchors")]
    strides = [state.get("stride") for name, state in modules
               if name == "models.yolo.Detect"]
    grid, stride = (grids[0], strides[0]) if len(grids) == len(strides) == 1 else (None, None)
    if grid is None or grid.dim() != 3 or tuple(grid.shape[1:]) != (count, 2) \
            or not isinstance(stride, torch.Tensor) or tuple(stride.shape) != (grid.shape[0],):
        raise CheckpointImportError(
            f"the description gives 'anchors: {count}' but there is no Detect layer with a "
            f"[levels, {count}, 2] anchors buffer and one stride per level to take them from")
    pixels = grid.float() * stride.float().view(-1, 1, 1)
    description["anchors"] = [[round(v, 4) for v in level.flatten().tolist()] for level in pixels]


def import_ultralytics_checkpoint(path: str | Path) -> ImportedCheckpoint:
    """Read an Ultralytics YOLOv5 checkpoint (EMA weights preferred, as YOLOv5 does)."""
    checkpoint = load_checkpoint_safely(path)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointImportError(f"{path}: expected a dict with a 'model' entry")
    model = checkpoint.get("ema") or checkpoint["model"]
    if getattr(model, "qualname", None) not in _DETECTION_MODEL_CLASSES:
        raise CheckpointImportError(
            f"{path}: 'model' is {model!r}, not one of {_DETECTION_MODEL_CLASSES}"
        )
    try:
        return _imported(model)
    except CheckpointImportError as e:
        raise CheckpointImportError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CheckpointImportError(f"{path}: malformed model record ({type(e).__name__}: "
                                    f"{str(e)[:160]})") from None


def _imported(model: Placeholder) -> ImportedCheckpoint:
    state = _state_of(model)
    if not isinstance(state.get("yaml"), dict):
        raise CheckpointImportError("the model carries no 'yaml' description")
    description = _json_clean(state["yaml"])
    tensors: dict[str, torch.Tensor] = {}
    _collect_tensors(model, "", tensors)
    modules = _module_states(model)
    _explicit_anchors(description, modules, tensors)
    description |= _batchnorm_settings(modules)
    state_dict = {
        k: (t.float() if t.is_floating_point() else t).detach().clone() for k, t in tensors.items()
    }
    return ImportedCheckpoint(
        description=description,
        names=_names_list(state.get("names"), int(description["nc"])),
        state_dict=state_dict,
        activation=_guess_activation({name for name, _ in modules}, description),
    )


def yolov5_from_checkpoint(imported: ImportedCheckpoint) -> YOLOv5:
    """Our YOLOv5 with the imported weights (strict, with shape mismatches named)."""
    try:
        model = YOLOv5(imported.description, activation=imported.activation,
                       names=imported.names)
        load_checked_state_dict(model, imported.state_dict)
    except (KeyError, TypeError, IndexError) as e:
        raise CheckpointImportError(f"the checkpoint's description does not build a YOLOv5 "
                                    f"({type(e).__name__}: {str(e)[:160]})") from None
    return model
