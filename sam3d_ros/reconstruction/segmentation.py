"""Object masks: from label images, and from detection boxes when no mask comes."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.support_plane import plane_heights
from sam3d_ros.geometry.types import ObjectPrompt


def labels_to_prompts(labels: np.ndarray, min_pixels: int = 1) -> list[ObjectPrompt]:
    """One prompt per instance id of a label image (0 = background).

    A mono8 binary mask (only 0 and 255) is one object with id "1" (the FoundationPose convention). Ids with fewer
    than `min_pixels` pixels are dropped.
    """
    return largest_label_prompts(labels, 0, min_pixels)[0]


def largest_label_prompts(labels: np.ndarray, max_objects: int, min_pixels: int = 1) -> tuple[list[ObjectPrompt], int]:
    """labels_to_prompts keeping only the `max_objects` largest instances (0 = all), and how many were left out.

    Masks are made only for the instances kept: a label image with hundreds of ids costs hundreds of pixel counts,
    not hundreds of full-size masks. The prompts are in id order (ties in size: the smaller id is kept)."""
    if labels.dtype.kind in "ui" and labels.size and 0 <= labels.min() and labels.max() < 2**20:
        counts = np.bincount(labels.ravel(), minlength=1)  # ~10x faster than np.unique's sort
        present = {int(i): int(counts[i]) for i in np.flatnonzero(counts) if i != 0}
    else:
        ids, counts = np.unique(labels, return_counts=True)
        present = {int(i): int(c) for i, c in zip(ids, counts) if i != 0}
    if labels.dtype == np.uint8 and set(present) == {255}:
        return ([ObjectPrompt(object_id="1", mask=labels == 255)] if present[255] >= min_pixels else []), 0
    present = {i: count for i, count in present.items() if count >= min_pixels}
    kept = sorted(present)
    if max_objects > 0 and len(kept) > max_objects:
        kept = sorted(sorted(present, key=lambda i: (-present[i], i))[:max_objects])
    return [ObjectPrompt(object_id=str(i), mask=labels == i) for i in kept], len(present) - len(kept)


def best_scored_prompts(prompts: list[ObjectPrompt], max_objects: int) -> tuple[list[ObjectPrompt], int]:
    """The `max_objects` best-scored prompts (0 = all) in their input order (ties: the earlier one), and how many
    were left out."""
    if max_objects <= 0 or len(prompts) <= max_objects:
        return list(prompts), 0
    best = set(sorted(range(len(prompts)), key=lambda k: (-prompts[k].score, k))[:max_objects])
    return [p for k, p in enumerate(prompts) if k in best], len(prompts) - max_objects


def boxes_in_image(prompts: list[ObjectPrompt], width: int, height: int) -> tuple[list[ObjectPrompt], list[str]]:
    """Prompts with their boxes clipped to the image, and one line per prompt whose box lies entirely outside it
    (such a prompt is left out: it would only give an empty mask). Prompts with a mask pass unchanged."""
    kept: list[ObjectPrompt] = []
    errors: list[str] = []
    for prompt in prompts:
        if prompt.mask is not None or prompt.bbox_xyxy is None:
            kept.append(prompt)
            continue
        x0, y0, x1, y1 = (float(v) for v in prompt.bbox_xyxy)
        cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
        if not (cx1 > cx0 and cy1 > cy0):  # NaN boxes fail here too
            errors.append(
                f"object {prompt.object_id}: box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] (x_min, y_min, x_max, y_max) lies "
                f"outside the {width}x{height} image"
            )
            continue
        kept.append(replace(prompt, bbox_xyxy=(cx0, cy0, cx1, cy1)))
    return kept, errors


def clip_box(bbox_xyxy: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel box (x0, y0, x1, y1), x1/y1 exclusive, clipped to the image; may be empty."""
    x0, y0, x1, y1 = bbox_xyxy
    x0i, y0i = int(np.clip(np.floor(x0), 0, width)), int(np.clip(np.floor(y0), 0, height))
    x1i, y1i = int(np.clip(np.ceil(x1), 0, width)), int(np.clip(np.ceil(y1), 0, height))
    return x0i, y0i, max(x0i, x1i), max(y0i, y1i)


def mask_from_box_depth(
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    bbox_xyxy: tuple[float, float, float, float],
    support_plane_cam: np.ndarray | None = None,
    plane_clearance_m: float = 0.01,
    depth_band_m: float = 0.15,
) -> np.ndarray:
    """Foreground inside a box from depth alone (needs no weights).

    Pixels on the support plane and pixels far behind the box's nearest surface are background; the connected
    component covering most of the box centre region (else the largest) is the object.
    """
    height, width = depth_m.shape
    x0, y0, x1, y1 = clip_box(bbox_xyxy, width, height)
    mask = np.zeros((height, width), dtype=bool)
    if x1 <= x0 or y1 <= y0:
        return mask
    crop = depth_m[y0:y1, x0:x1]
    valid = np.isfinite(crop) & (crop > 0)
    if not valid.any():
        return mask
    near = np.percentile(crop[valid], 10)
    fg = valid & (crop < near + depth_band_m)
    if support_plane_cam is not None:
        box_mask = np.zeros((height, width), dtype=bool)
        box_mask[y0:y1, x0:x1] = True
        points_cam, pixels = intrinsics.backproject(depth_m, box_mask)
        on_plane = np.zeros((height, width), dtype=bool)
        on_plane[pixels[:, 0], pixels[:, 1]] = plane_heights(support_plane_cam, points_cam) < plane_clearance_m
        fg &= ~on_plane[y0:y1, x0:x1]
    count, components = cv2.connectedComponents(fg.astype(np.uint8), connectivity=4)
    if count <= 1:
        return mask
    h, w = fg.shape
    centre = components[h // 4 : h - h // 4, w // 4 : w - w // 4]
    votes = np.bincount(centre[centre > 0].ravel(), minlength=count)
    if votes.max() == 0:
        votes = np.bincount(components[components > 0].ravel(), minlength=count)
    mask[y0:y1, x0:x1] = components == int(votes.argmax())
    return mask
