"""Label images and boxes to object masks."""
import numpy as np

from sam3d_ros.geometry.camera import CameraIntrinsics
from sam3d_ros.reconstruction.segmentation import clip_box, labels_to_prompts, mask_from_box_depth


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
