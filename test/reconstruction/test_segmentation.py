"""Label images and boxes to object masks."""
import numpy as np

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.geometry.types import ObjectPrompt
from sam3d_ros.reconstruction.segmentation import (
    best_scored_prompts, boxes_in_image, clip_box, labels_to_prompts, largest_label_prompts, mask_from_box_depth,
)


def test_label_image_gives_one_prompt_per_id():
    labels = np.zeros((10, 10), np.uint16)
    labels[1:3, 1:3] = 7
    labels[5:9, 5:9] = 300
    prompts = labels_to_prompts(labels)
    assert [p.object_id for p in prompts] == ["7", "300"]
    assert prompts[0].mask.sum() == 4 and prompts[1].mask.sum() == 16


def test_binary_mono8_mask_is_one_object_and_small_ids_dropped():
    binary = np.zeros((10, 10), np.uint8)
    binary[2:6, 2:6] = 255
    prompts = labels_to_prompts(binary)
    assert [p.object_id for p in prompts] == ["1"] and prompts[0].mask.sum() == 16
    labels = np.zeros((10, 10), np.int32)
    labels[0, 0] = 3
    labels[4:8, 4:8] = 4
    assert [p.object_id for p in labels_to_prompts(labels, min_pixels=2)] == ["4"]
    assert labels_to_prompts(np.zeros((4, 4), np.uint8)) == []


def test_beyond_max_objects_the_largest_labels_are_kept_in_id_order():
    labels = np.zeros((30, 30), np.uint16)
    for k, size in enumerate([1, 4, 2, 4, 3], start=1):  # id k covers a size x size square
        labels[k * 4:k * 4 + size, 0:size] = k
    prompts, dropped = largest_label_prompts(labels, 3)
    assert [p.object_id for p in prompts] == ["2", "4", "5"] and dropped == 2  # 16, 16 and 9 pixels
    assert largest_label_prompts(labels, 0)[1] == 0 and len(largest_label_prompts(labels, 0)[0]) == 5
    small_left_out, dropped = largest_label_prompts(labels, 3, min_pixels=10)
    assert [p.object_id for p in small_left_out] == ["2", "4"] and dropped == 0  # too small is not "dropped"


def test_beyond_max_objects_the_best_scored_detections_are_kept_in_input_order():
    prompts = [ObjectPrompt(name, score=score) for name, score in [("a", 0.2), ("b", 0.9), ("c", 0.5), ("d", 0.9)]]
    kept, dropped = best_scored_prompts(prompts, 2)
    assert [p.object_id for p in kept] == ["b", "d"] and dropped == 2
    assert best_scored_prompts(prompts, 0) == (prompts, 0) and best_scored_prompts(prompts, 4) == (prompts, 0)


def test_boxes_are_clipped_and_those_outside_the_image_reported():
    prompts = [ObjectPrompt("in", bbox_xyxy=(-5.0, 10.0, 30.0, 500.0)), ObjectPrompt("out", bbox_xyxy=(640.0, 0.0, 700.5, 10.0)),
               ObjectPrompt("mask", mask=np.zeros((480, 640), bool))]
    kept, errors = boxes_in_image(prompts, 640, 480)
    assert [p.object_id for p in kept] == ["in", "mask"] and kept[0].bbox_xyxy == (0.0, 10.0, 30.0, 480.0)
    assert errors == ["object out: box [640, 0, 700.5, 10] (x_min, y_min, x_max, y_max) lies outside the 640x480 image"]


def test_clip_box():
    assert clip_box((-5.2, 3.7, 700.0, 20.1), 640, 480) == (0, 3, 640, 21)
    assert clip_box((700, 500, 800, 600), 640, 480) == (640, 480, 640, 480)


def test_mask_from_box_depth_separates_object_from_plane_and_background():
    cam = CameraIntrinsics(120, 100, 100.0, 100.0, 59.5, 49.5)
    depth = np.full((100, 120), 1.0, np.float32)  # a wall at 1 m facing the camera
    depth[30:60, 40:80] = 0.7  # an object in front of it
    mask = mask_from_box_depth(depth, cam, (30, 20, 90, 70))
    assert mask[30:60, 40:80].all()
    assert mask.sum() == 30 * 40
    plane = np.array([0.0, 0.0, -1.0, 1.0])  # the wall as the support plane: same result
    assert (mask_from_box_depth(depth, cam, (30, 20, 90, 70), plane) == mask).all()
    assert not mask_from_box_depth(depth, cam, (200, 200, 300, 300)).any()
