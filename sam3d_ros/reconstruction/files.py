"""Reading the CLI's input files and writing its results (no ROS needed)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.transforms import pose_from_transform
from sam3d_ros.geometry.types import InputError, ObjectPrompt, ObjectReconstruction


def _existing(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    return path


def read_rgb(path: Path) -> np.ndarray:
    """8-bit PNG/JPEG as HxWx3 uint8 RGB."""
    image = cv2.imread(str(_existing(path, "colour image")), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint8:
        raise InputError(f"colour image {path} is not an 8-bit PNG/JPEG")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def read_depth(path: Path, depth_scale: float) -> np.ndarray:
    """16-bit PNG (value x depth_scale = metres) or .npy float metres, as float32 metres with NaN where invalid."""
    path = _existing(path, "depth")
    if path.suffix.lower() == ".npy":
        try:
            depth = np.load(path, allow_pickle=False).astype(np.float32)
        except ValueError as exc:
            raise InputError(f"depth {path} is not a plain numpy array: {exc}") from exc
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
            raise InputError(f"depth {path} is not a single-channel 16-bit PNG (or a .npy of metres)")
        if not depth_scale > 0:
            raise InputError(f"--depth-scale must be positive, got {depth_scale}")
        depth = raw.astype(np.float32) * np.float32(depth_scale)
    if depth.ndim != 2:
        raise InputError(f"depth {path} must be a 2D image, got shape {depth.shape}")
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML parser error (PyYAML's own message spans several lines with a quoted excerpt)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def read_camera_yaml(path: Path) -> CameraIntrinsics:
    """Intrinsics from a camera_calibration / camera_info_manager YAML file (image_width, image_height,
    camera_matrix.data) or from a sensor_msgs/CameraInfo message as YAML, the way `ros2 topic echo --once
    /camera/camera_info > cam.yaml` saves it (width, height, k; ROS 1's K too). Distortion is ignored, as in the
    node: images are expected rectified."""
    text = _existing(path, "camera info").read_text()
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]  # `ros2 topic echo` ends with '---'
    except yaml.YAMLError as exc:
        raise InputError(f"camera info {path} is not valid YAML: {_yaml_problem(exc)}") from exc
    data = documents[0] if documents else None
    try:
        if isinstance(data, dict) and "camera_matrix" in data:
            K, width, height = data["camera_matrix"]["data"], data["image_width"], data["image_height"]
        elif isinstance(data, dict) and ("k" in data or "K" in data):
            K, width, height = data["k"] if "k" in data else data["K"], data["width"], data["height"]
        else:
            raise KeyError("camera_matrix or k")
        K = np.array(K, dtype=float).reshape(3, 3)
        intrinsics = CameraIntrinsics.from_K(K, int(width), int(height))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"camera info {path} is neither a camera_calibration YAML (image_width, image_height, camera_matrix.data) "
            f"nor a CameraInfo message (width, height, k): {type(exc).__name__} {exc}"
        ) from exc
    try:
        intrinsics.validate()
    except ValueError as exc:
        raise InputError(f"camera info {path}: {exc}") from exc
    return intrinsics


def write_camera_yaml(path: Path, intrinsics: CameraIntrinsics, camera_name: str = "camera") -> None:
    """camera_calibration YAML of a distortion-free pinhole camera."""
    K = intrinsics.K
    P = np.hstack([K, np.zeros((3, 1))])
    data = {
        "image_width": intrinsics.width, "image_height": intrinsics.height, "camera_name": camera_name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": K.ravel().tolist()},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": np.eye(3).ravel().tolist()},
        "projection_matrix": {"rows": 3, "cols": 4, "data": P.ravel().tolist()},
    }
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))


def read_labels(path: Path) -> np.ndarray:
    """8- or 16-bit label PNG (0 = background, value = id) as an integer array."""
    labels = cv2.imread(str(_existing(path, "label image")), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2 or labels.dtype not in (np.uint8, np.uint16):
        raise InputError(f"label image {path} is not a single-channel 8- or 16-bit PNG")
    return labels


def read_detections(path: Path) -> list[ObjectPrompt]:
    """DET.json: a list of {"id", "label", "score", "bbox": [x_min, y_min, x_max, y_max]} (pixels)."""
    try:
        entries = json.loads(_existing(path, "detections").read_text())
        prompts = []
        for entry in entries:
            x0, y0, x1, y1 = (float(v) for v in entry["bbox"])
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"detection {entry.get('id')}: bbox {entry['bbox']} is empty (need x_max > x_min, y_max > y_min)")
            prompts.append(ObjectPrompt(str(entry["id"]), str(entry.get("label", "")), float(entry.get("score", 1.0)), bbox_xyxy=(x0, y0, x1, y1)))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"detections {path} must be a JSON list of {{id, label, score, bbox: [x_min, y_min, x_max, y_max]}}: {exc}") from exc
    ids = [p.object_id for p in prompts]
    if len(set(ids)) != len(ids):
        raise InputError(f"detections {path} repeat an id: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    return prompts


def grasp_entry(T_frame_grasp: np.ndarray, width_m: float, score: float) -> dict:
    """One grasp of objects.json: gripper frame pose (README "Grasps"), jaw opening at contact (m), score [0, 1]."""
    position, q_xyzw = pose_from_transform(T_frame_grasp)
    return {"position": position.round(5).tolist(), "orientation_xyzw": q_xyzw.round(6).tolist(),
            "width": round(float(width_m), 5), "score": round(float(score), 4)}


def write_results(out_dir: Path, frame_id: str, objects: list[ObjectReconstruction], glb: bool = True,
                  stamp_ns: int | None = None) -> Path:
    """DIR/objects.json plus one PLY (and GLB) mesh per object, in metres in the object frame. Poses are in `frame_id`
    (`T_cam_obj` of each object is read as its pose in that frame); `stamp_ns`, when given, is the time they hold for
    ("stamp_ns" in the JSON)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for obj in objects:
        stem = "object_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in obj.object_id)
        obj.mesh_obj.export(out_dir / f"{stem}.ply")
        if glb:
            obj.mesh_obj.export(out_dir / f"{stem}.glb")
        position, q_xyzw = pose_from_transform(obj.T_cam_obj)
        entries.append({
            "id": obj.object_id, "label": obj.label, "score": obj.score,
            "position": position.tolist(), "orientation_xyzw": q_xyzw.tolist(), "size": obj.size_obj.tolist(),
            "mesh": f"{stem}.ply", "metric_scale": obj.metric_scale, "backend": obj.backend,
        })
        if obj.box_centre_obj is not None:  # the size box's centre in the object frame (a fused mesh's box)
            entries[-1]["box_centre_obj"] = np.asarray(obj.box_centre_obj, dtype=np.float64).tolist()
        if obj.confidence is not None:
            entries[-1]["confidence"] = round(float(obj.confidence), 4)
        if obj.grasps_obj is not None:  # best first, in frame_id like the object's pose
            entries[-1]["grasps"] = [grasp_entry(T, width, score) for T, width, score in obj.grasps_in(obj.T_cam_obj)]
        info = obj.info or {}
        if info.get("mesh_source"):  # where the mesh came from, and why not from the model when it did not
            entries[-1]["mesh_source"] = str(info["mesh_source"])
        if info.get("no_mesh_reason"):
            entries[-1]["no_mesh_reason"] = str(info["no_mesh_reason"])
        timings = {k: info[k] for k in ("inference_s", "model_stages_s", "gpu_peak_mib", "timings_ms") if k in info}
        if obj.backend == "sam3d" and timings:
            entries[-1]["timings"] = timings
    path = out_dir / "objects.json"
    scene: dict = {"frame_id": frame_id}
    if stamp_ns is not None:
        scene["stamp_ns"] = int(stamp_ns)
    scene["objects"] = entries
    path.write_text(json.dumps(scene, indent=2))
    return path
