"""Small data types shared by the ROS-free core, the CLI and the node."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from sam3d_ros.geometry.camera import CameraIntrinsics


class InputError(ValueError):
    """Input that cannot be processed; the message names the problem in one line."""


@dataclass
class RGBDFrame:
    """One colour image with optional registered depth, both in the optical frame `frame_id`."""

    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    depth_m: np.ndarray | None  # (H, W) float32 metres, NaN where invalid; None when no depth came
    intrinsics: CameraIntrinsics
    frame_id: str = "camera_color_optical_frame"
    stamp_ns: int = 0

    def validate(self) -> None:
        """Raise InputError when the parts of the frame do not fit together."""
        try:
            self.intrinsics.validate()
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise InputError(f"colour image must be HxWx3 uint8, got {self.rgb.shape} {self.rgb.dtype}")
        height, width = self.rgb.shape[:2]
        if (width, height) != (self.intrinsics.width, self.intrinsics.height):
            raise InputError(
                f"colour image is {width}x{height} but camera_info says {self.intrinsics.width}x{self.intrinsics.height}"
            )
        if self.depth_m is not None and self.depth_m.shape != (height, width):
            raise InputError(
                f"depth image is {self.depth_m.shape[1]}x{self.depth_m.shape[0]} but colour image is {width}x{height}"
                " (depth must be registered to the colour image)"
            )
        if self.depth_m is not None and not np.isfinite(self.depth_m).any():
            raise InputError("depth image has no valid pixel (all NaN, zero or infinite)")


@dataclass
class ObjectPrompt:
    """What the segmenter or detector says about one object: a mask, or a box to segment inside."""

    object_id: str
    label: str = ""
    score: float = 1.0
    mask: np.ndarray | None = None  # (H, W) bool
    bbox_xyxy: tuple[float, float, float, float] | None = None  # pixels: x_min, y_min, x_max, y_max


@dataclass
class ObjectReconstruction:
    """A reconstructed object: mesh in metres in its own frame and that frame's pose in the optical frame."""

    object_id: str
    label: str
    score: float
    T_cam_obj: np.ndarray  # (4, 4) object frame -> optical frame
    size_obj: np.ndarray  # (3,) extents in metres along the object frame's x, y, z
    mesh_obj: trimesh.Trimesh  # vertices in metres in the object frame, RGBA vertex colours
    mask: np.ndarray  # (H, W) bool, the mask that was reconstructed
    metric_scale: bool = True
    backend: str = ""
    info: dict = field(default_factory=dict)
    # How far the reconstruction can be trusted, in [0, 1] (the depth backend: how well its mesh explains the depth
    # image, `geometry/depth_explanation.py`); None when the backend gives none.
    confidence: float | None = None
    grasps_obj: list | None = None  # geometry.grasps.Grasp best first, object frame; None when not planned
    # (3,) centre of the size_obj box in the object frame; None: the frame's origin (a backend's reconstruction). A
    # fused mesh keeps the frame it was tracked in, so its box need not be centred on the origin.
    box_centre_obj: np.ndarray | None = None

    def T_obj_box(self) -> np.ndarray:
        """(4, 4) pose of the size_obj box (the object's axes, centred on the box) in the object frame."""
        T = np.eye(4)
        if self.box_centre_obj is not None:
            T[:3, 3] = np.asarray(self.box_centre_obj, dtype=np.float64)
        return T

    def grasps_in(self, T_frame_obj: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
        """(T_frame_grasp, width_m, score) of every grasp, best first, moved by the object's pose T_frame_obj."""
        return [(T_frame_obj @ g.T_obj_grasp, g.width_m, g.score) for g in self.grasps_obj or ()]

    @property
    def position_cam(self) -> np.ndarray:
        """Object frame origin in the optical frame (metres)."""
        return self.T_cam_obj[:3, 3].copy()


@dataclass
class SceneContext:
    """What the pipeline knows about the whole frame when it reconstructs one object."""

    support_plane_cam: np.ndarray | None = None  # (4,) a, b, c, d with unit normal toward the camera: n.p + d = 0
    others_mask: np.ndarray | None = None  # (H, W) bool, pixels of the other objects (possible occluders)
