"""FrameAssembler: approximate stamp matching with masks-or-detections and optional depth."""
from sam3d_ros.ros.sync import FrameAssembler

MS = 1_000_000


def test_frame_completes_with_all_inputs_within_slop():
    a = FrameAssembler(slop_s=0.01, depth_timeout_s=1.0, segmentation_slop_s=0.01)
    assert a.add("depth", 100 * MS, "d", 0.0) == []
    assert a.add("image", 103 * MS, "i", 0.0) == []
    assert a.add("camera_info", 103 * MS, "c", 0.0) == []
    assert a.add("masks", 106 * MS, "m", 0.0) == []  # a later depth could still be closer: wait
    frames = a.add("depth", 133 * MS, "d_next", 0.0)
    assert len(frames) == 1
    f = frames[0]
    assert (f.image, f.camera_info, f.depth, f.masks, f.detections) == ("i", "c", "d", "m", None)
    assert a.pending_images() == 0


def test_stamps_outside_slop_do_not_match():
    a = FrameAssembler(slop_s=0.01)
    a.add("depth", 0, "d", 0.0)
    a.add("camera_info", 50 * MS, "c", 0.0)
    a.add("image", 50 * MS, "i", 0.0)
    assert a.add("masks", 50 * MS, "m", 0.0) == []  # depth 50 ms away and arrived recently: wait for it
    frames = a.add("depth", 55 * MS, "d2", 0.1)
    assert frames and frames[0].depth == "d2"


def test_detections_used_when_no_masks_and_masks_preferred():
    a = FrameAssembler(slop_s=0.01, depth_timeout_s=0.5)
    a.add("camera_info", 0, "c", 0.0)
    a.add("image", 0, "i", 0.0)
    frames = a.add("detections", 0, "det", 10.0)  # no depth ever: frame goes without depth
    assert frames[0].detections == "det" and frames[0].depth is None
    a.add("camera_info", 100 * MS, "c", 11.0)
    a.add("image", 100 * MS, "i2", 11.0)
    frames = a.add("masks", 100 * MS, "m2", 11.0)  # whichever segmentation arrives first completes the frame
    assert frames[-1].masks == "m2" and frames[-1].detections is None
    assert a.add("detections", 100 * MS, "det2", 11.0) == []  # that image is done
    a.add("detections", 200 * MS, "det3", 11.0)
    a.add("masks", 200 * MS, "m3", 11.0)
    frames = a.add("image", 200 * MS, "i3", 11.0)  # both waiting: masks are preferred
    assert frames[-1].masks == "m3" and frames[-1].detections is None


def test_segmentation_mode_masks_ignores_detections():
    a = FrameAssembler(segmentation="masks")
    a.add("camera_info", 0, "c", 0.0)
    a.add("image", 0, "i", 0.0)
    assert a.add("detections", 0, "det", 5.0) == []


def test_camera_info_falls_back_to_latest_and_old_images_are_dropped():
    a = FrameAssembler(slop_s=0.01, queue_size=3)
    a.add("camera_info", 0, "c_old", 0.0)
    for k in range(5):
        a.add("image", (k + 1) * 1000 * MS, f"i{k}", 0.0)
    assert a.dropped_images == 2
    frames = a.add("masks", 5000 * MS, "m", 5.0)
    assert [f.image for f in frames] == ["i4"] and frames[0].camera_info == "c_old"
    assert a.pending_images() == 0


def test_a_late_mask_is_not_swapped_for_the_previous_frames():
    a = FrameAssembler(slop_s=0.05)
    for k, stamp in enumerate((0, 33 * MS)):
        a.add("camera_info", stamp, "c", 0.0)
        a.add("depth", stamp, f"d{k}", 0.0)
    a.add("masks", 0, "m0", 0.0)
    frames = a.add("image", 0, "i0", 0.0)
    assert frames[0].masks == "m0"
    assert a.add("image", 33 * MS, "i1", 0.0) == []  # its mask is still being computed
    frames = a.add("masks", 33 * MS, "m1", 0.0)
    assert frames[0].image == "i1" and frames[0].masks == "m1" and frames[0].depth == "d1"


def test_segmentation_slop_allows_restamped_masks():
    a = FrameAssembler(slop_s=0.05, segmentation_slop_s=0.01)
    a.add("camera_info", 0, "c", 0.0)
    a.add("depth", 0, "d", 0.0)
    a.add("image", 0, "i", 0.0)
    assert a.add("masks", 20 * MS, "m_far", 0.0) == []  # outside 10 ms
    a.add("image", 100 * MS, "i2", 0.0)
    a.add("depth", 100 * MS, "d2", 0.0)
    a.add("camera_info", 100 * MS, "c2", 0.0)
    frames = a.add("masks", 105 * MS, "m2", 0.0)
    assert [(f.image, f.masks) for f in frames] == [("i2", "m2")]
