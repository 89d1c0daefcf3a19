"""The one interface every reconstruction method implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
import numpy as np

from sam3d_ros.geometry.types import ObjectReconstruction, RGBDFrame, SceneContext


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

