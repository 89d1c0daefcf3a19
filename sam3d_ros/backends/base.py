"""The one interface every reconstruction method implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from sam3d_ros.types import ObjectReconstruction, RGBDFrame, SceneContext


class ReconstructionError(RuntimeError):
    """One object could not be reconstructed; the message says why in one line."""


class ReconstructionBackend(ABC):
    """`rgb, depth, intrinsics, mask -> mesh in the object frame + pose in the optical frame + size`."""

    name: str = "base"
    #: True when the backend cannot give metric results without depth.
    needs_depth: bool = True

    @abstractmethod
    def reconstruct(
        self, frame: RGBDFrame, mask: np.ndarray, scene: SceneContext, object_id: str = "", label: str = "", score: float = 1.0
    ) -> ObjectReconstruction:
        """Reconstruct the object under `mask` (H x W bool) in `frame`; raise ReconstructionError on failure."""


def create_backend(name: str, **options: Any) -> ReconstructionBackend:
    """Backend by its parameter name: `depth` (built-in) or `sam3d` (SAM 3D Objects through a worker process)."""
    if name == "depth":
        from sam3d_ros.backends.depth import DepthBackend

        return DepthBackend(**options)
    if name == "sam3d":
        from sam3d_ros.backends.sam3d import Sam3dBackend

        return Sam3dBackend(**options)
    raise ValueError(f"unknown backend '{name}' (available: depth, sam3d)")
