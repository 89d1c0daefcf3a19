"""A stand-in for SAM 3D Objects that answers from ground truth in the official output format (tests, benchmark).

The worker loads it like the real model: `sam3d-ros worker --inference sam3d_ros.sam3d.standin:GroundTruthModel
--sam3d-config scene.json`. The model only sees `(image, mask, seed, pointmap)`, so the config file holds the
scene (see `write_standin_config`):

    {"format": "sam3d-ros-standin/1",
     "labels": "labels.npy",                      # optional (H, W) instance ids: the object is the mask's majority id
     "intrinsics": {"width":.., "height":.., "fx":.., "fy":.., "cx":.., "cy":..},  # optional: nearest projected centre
     "objects": [{"id": 1, "mesh": "mesh_1.npz", "T_cam_model": [[4x4]]}, ...],   # mesh: .npz (vertices, faces) or
                                                                                    # any file trimesh loads
     "perturb": {"scale": 0.3, "translation_m": 0.03, "rotation_deg": 0.0, "seed": 0},  # optional model error
     "verify_pointmap_m": 0.005,                  # optional: reject a point map off the true surface (convention bugs)
     "delay_s": 0.0, "fail_ids": []}              # optional: simulated inference time, ids that raise

Output, following the official contract: the object frame is the mesh's model frame moved to the centre of its
bounding box; the shape is normalised by its largest extent s into the unit cube; `rotation` (1, 4) w, x, y, z and
`translation` (1, 3) are in the PyTorch3D camera frame with row-vector posing `s * v @ R(q) + t`; `scale` (1, 3) is
s three times; `glb` is a Y-up `trimesh.Trimesh` with vertex colours. With `stage1_only=True` there is no glb but
`voxel` (N, 3): occupied cells of a 64^3 grid as `coords / 64 - 0.5` (Z-up object frame). Tensors are torch
tensors when torch can be imported, else numpy arrays.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam3d_ros.sam3d import frames as frames
FORMAT = "sam3d-ros-standin/1"


@dataclass
class _Truth:
    """One object's ground truth in the model's conventions (cached per object id)."""

    object_id: int
    T_cam_obj: np.ndarray  # (4, 4) object frame (model frame at its box centre) -> optical frame
    scale: float  # largest extent of the mesh (m): the unit-cube normalisation
    v_unit: np.ndarray  # (N, 3) vertices in the unit cube, Z up
    faces: np.ndarray  # (M, 3)
    surface_cam: np.ndarray  # (K, 3) vertices in the optical frame (point map check)


def write_standin_config(
    path: str | Path,
    objects: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
    labels: np.ndarray | None = None,
    intrinsics: Any = None,
    **options: Any,
) -> Path:
    """Write a stand-in config next to its data: `objects` are (id, T_cam_model (4, 4), vertices (N, 3) m in the
    model frame, faces (M, 3)); `labels` an (H, W) id image; `options` go into the JSON as they are (perturb,
    verify_pointmap_m, delay_s, fail_ids)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    for object_id, T_cam_model, vertices, faces in objects:
        mesh_path = path.with_name(f"{path.stem}_mesh_{int(object_id)}.npz")
        np.savez(mesh_path, vertices=np.asarray(vertices, dtype=np.float64), faces=np.asarray(faces, dtype=np.int64))
        entries.append({"id": int(object_id), "mesh": mesh_path.name,
                        "T_cam_model": np.asarray(T_cam_model, dtype=float).tolist()})
    config: dict[str, Any] = {"format": FORMAT, "objects": entries, **options}
    if labels is not None:
        labels_path = path.with_name(f"{path.stem}_labels.npy")
        np.save(labels_path, np.asarray(labels), allow_pickle=False)
        config["labels"] = labels_path.name
    if intrinsics is not None:
        config["intrinsics"] = {k: getattr(intrinsics, k) for k in ("width", "height", "fx", "fy", "cx", "cy")}
    path.write_text(json.dumps(config, indent=1))
    return path


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["vertices"], dtype=np.float64), np.asarray(data["faces"], dtype=np.int64)
    import trimesh

    mesh = trimesh.load(path, force="mesh", process=False)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


class GroundTruthModel:
    """Factory and model in one: `GroundTruthModel(config_path)(image, mask, seed=None, pointmap=None, ...)`."""

    def __init__(self, config_path: str) -> None:
        path = Path(config_path)
        config = json.loads(path.read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} config")
        self._objects = {int(o["id"]): o for o in config["objects"]}
        self._mesh_dir = path.parent
        self._labels = np.load(path.parent / config["labels"], allow_pickle=False) if config.get("labels") else None
        self._intrinsics = config.get("intrinsics")
        self._perturb = dict(config.get("perturb") or {})
        self._verify_pointmap_m = config.get("verify_pointmap_m")
        self._delay_s = float(config.get("delay_s", 0.0))
        self._fail_ids = {int(i) for i in config.get("fail_ids", [])}
        self._truth: dict[int, _Truth] = {}
        self._outputs: dict[tuple[int, bool], dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []  # what each call received (seed, options), for in-process tests
        try:
            import torch  # noqa: F401  (the official model returns tensors; use them when available)

            self._torch = torch
        except ImportError:
            self._torch = None

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        seed: int | None = None,
        pointmap: Any = None,
        stage1_only: bool = False,
        stage1_inference_steps: int | None = None,
    ) -> dict[str, Any]:
        image, mask = np.asarray(image), np.asarray(mask, dtype=bool)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != mask.shape:
            raise ValueError(f"image {image.shape} and mask {mask.shape} do not fit")
        self.calls.append({"seed": seed, "stage1_only": stage1_only, "stage1_inference_steps": stage1_inference_steps,
                           "pointmap": pointmap is not None})
        if self._delay_s > 0:
            time.sleep(self._delay_s)
        object_id = self._identify(mask)
        if object_id in self._fail_ids:
            raise RuntimeError(f"stand-in told to fail on object {object_id}")
        truth = self._truth_of(object_id)
        if pointmap is not None and self._verify_pointmap_m is not None:
            self._verify_pointmap(pointmap, mask, truth)
        key = (object_id, bool(stage1_only))
        if key not in self._outputs:
            self._outputs[key] = self._output(truth, bool(stage1_only))
        return dict(self._outputs[key])

    # -- ground truth ------------------------------------------------------------------------------------------
    def _identify(self, mask: np.ndarray) -> int:
        if not mask.any():
            raise ValueError("empty mask")
        if self._labels is not None:
            if self._labels.shape != mask.shape:
                raise ValueError(f"mask {mask.shape} does not match the labels {self._labels.shape}")
            counts = np.bincount(self._labels[mask].astype(np.int64).ravel())
            counts[0] = 0
            if counts.max() > 0 and int(counts.argmax()) in self._objects:
                return int(counts.argmax())
            raise ValueError("the mask covers no known object")
        if self._intrinsics is None:
            if len(self._objects) == 1:
                return next(iter(self._objects))
            raise ValueError("config has neither labels nor intrinsics to tell the objects apart")
        rows, cols = np.nonzero(mask)
        centroid = np.array([cols.mean(), rows.mean()])
        k = self._intrinsics

        def pixel_distance(object_id: int) -> float:
            centre = self._truth_of(object_id).T_cam_obj[:3, 3]
            uv = np.array([k["fx"] * centre[0] / centre[2] + k["cx"], k["fy"] * centre[1] / centre[2] + k["cy"]])
            return float(np.linalg.norm(uv - centroid))

        return min(self._objects, key=pixel_distance)

    def _truth_of(self, object_id: int) -> _Truth:
        if object_id not in self._truth:
            entry = self._objects[object_id]
            vertices, faces = _load_mesh(self._mesh_dir / entry["mesh"])
            lo, hi = vertices.min(axis=0), vertices.max(axis=0)
            centre, scale = (lo + hi) / 2.0, float((hi - lo).max())
            T_cam_model = np.asarray(entry["T_cam_model"], dtype=np.float64).reshape(4, 4)
            T_cam_obj = T_cam_model.copy()
            T_cam_obj[:3, 3] = T_cam_model[:3, :3] @ centre + T_cam_model[:3, 3]
            surface_cam = vertices @ T_cam_model[:3, :3].T + T_cam_model[:3, 3]
            v_unit = (vertices - centre) / scale
            self._truth[object_id] = _Truth(object_id, T_cam_obj, scale, v_unit, faces, surface_cam)
        return self._truth[object_id]

    def _verify_pointmap(self, pointmap: Any, mask: np.ndarray, truth: _Truth) -> None:
        """Raise when the masked point map (PyTorch3D convention) is not on the true surface."""
        from scipy.spatial import cKDTree

        if hasattr(pointmap, "detach"):  # a torch tensor, as the official pipeline takes it
            pointmap = pointmap.detach().cpu().numpy()
        p_p3d = np.asarray(pointmap, dtype=np.float64)
        if p_p3d.shape != mask.shape + (3,):
            raise ValueError(f"point map {p_p3d.shape} does not match the mask {mask.shape}")
        points_p3d = p_p3d[mask]
        points_p3d = points_p3d[np.isfinite(points_p3d).all(axis=1)]
        if len(points_p3d) == 0:
            return
        distance, _ = cKDTree(truth.surface_cam).query(frames.p3d_to_ros(points_p3d))
        if float(np.median(distance)) > float(self._verify_pointmap_m):
            raise ValueError(f"point map is {np.median(distance):.3f} m off the true surface (wrong convention?)")

    # -- output --------------------------------------------------------------------------------------------------
    def _output(self, truth: _Truth, stage1_only: bool) -> dict[str, Any]:
        T_cam_obj, scale = truth.T_cam_obj.copy(), truth.scale
        if self._perturb:
            rng = np.random.default_rng([int(self._perturb.get("seed", 0)), truth.object_id])
            scale *= 1.0 + float(self._perturb.get("scale", 0.0)) * rng.choice([-1.0, 1.0])
            direction = rng.normal(size=3)
            T_cam_obj[:3, 3] += float(self._perturb.get("translation_m", 0.0)) * direction / np.linalg.norm(direction)
            angle = np.radians(float(self._perturb.get("rotation_deg", 0.0)))
            if angle:
                from scipy.spatial.transform import Rotation

                axis = rng.normal(size=3)
                turn = Rotation.from_rotvec(angle * axis / np.linalg.norm(axis)).as_matrix()
                T_cam_obj[:3, :3] = turn @ T_cam_obj[:3, :3]
        q_wxyz, t_p3d = frames.p3d_pose_from_T_cam_obj(T_cam_obj)
        output: dict[str, Any] = {
            "rotation": self._tensor(q_wxyz[None]),
            "translation": self._tensor(t_p3d[None]),
            "scale": self._tensor(np.full((1, 3), scale)),
        }
        if stage1_only:
            cells = np.unique(np.clip(np.floor((truth.v_unit + 0.5) * 64), 0, 63).astype(np.int64), axis=0)
            output["coords"] = self._tensor(np.column_stack([np.zeros(len(cells), np.int64), cells]))
            output["voxel"] = self._tensor(cells / 64.0 - 0.5)
            return output
        import trimesh

        colours = np.column_stack([np.clip((truth.v_unit + 0.5) * 255, 0, 255), np.full(len(truth.v_unit), 255)])
        output["glb"] = trimesh.Trimesh(
            vertices=frames.obj_to_glb(truth.v_unit).astype(np.float32), faces=truth.faces,
            vertex_colors=colours.astype(np.uint8), process=False,
        )
        return output

    def _tensor(self, array: np.ndarray) -> Any:
        array = np.asarray(array)
        if self._torch is None:
            return array.astype(np.float32) if array.dtype.kind == "f" else array
        return self._torch.from_numpy(array.astype(np.float32) if array.dtype.kind == "f" else array)
