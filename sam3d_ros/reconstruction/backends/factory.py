"""The backend factory: a backend by its parameter name (kept apart from `base.py`, which knows no implementation)."""
from __future__ import annotations

from typing import Any

from sam3d_ros.reconstruction.backends.base import ReconstructionBackend
from sam3d_ros.reconstruction.backends.depth import DepthBackend
from sam3d_ros.reconstruction.backends.sam3d import Sam3dBackend

BACKENDS: dict[str, type[ReconstructionBackend]] = {"depth": DepthBackend, "sam3d": Sam3dBackend}


def create_backend(name: str, **options: Any) -> ReconstructionBackend:
    """Backend by its parameter name: `depth` (built-in) or `sam3d` (SAM 3D Objects through a worker process)."""
    backend_class = BACKENDS.get(name)
    if backend_class is None:
        raise ValueError(f"unknown backend '{name}' (available: {', '.join(BACKENDS)})")
    return backend_class(**options)
