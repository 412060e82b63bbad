"""Where the package's shared files (models/, config/) are, installed or in a source checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "suhd_ros"
DEFAULT_MODEL = "suhd-yolov5n-shapes.safetensors"  # fine-tuned with the quantiser: T = 4, f_c = 4
# the float ANN the default model was fine-tuned from, converted after training (T = 4, f_c = 8):
# the 1.000 reference of the accuracy tables
REFERENCE_MODEL = "suhd-yolov5n-shapes-post-training.safetensors"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """share/suhd_ros of a ROS install (ament index), else the source checkout's root."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        return _SOURCE_ROOT
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, OSError, ValueError):
        return _SOURCE_ROOT


def package_installed(name: str) -> bool:
    """Whether a ROS package is in the ament index (False where there is no ament index)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return False
    try:
        get_package_prefix(name)
    except (PackageNotFoundError, OSError, ValueError):  # OSError: no AMENT_PREFIX_PATH
        return False
    return True


def default_model_path() -> Path:
    """The embedded default model file."""
    return share_dir() / "models" / DEFAULT_MODEL


def reference_model_path() -> Path:
    """The embedded float ANN the default model came from (with its post-training conversion)."""
    return share_dir() / "models" / REFERENCE_MODEL


def resolve_model_path(model_path: str | Path | None) -> Path:
    """Absolute paths as they are; relative ones against the package's models/; empty = default."""
    if model_path is None or str(model_path).strip() == "":
        return default_model_path()
    path = Path(model_path).expanduser()
    if path.is_absolute():
        return path
    in_models = share_dir() / "models" / path
    return in_models if in_models.exists() or not path.exists() else path.resolve()
