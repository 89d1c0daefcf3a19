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
    a.add("camera_info", 200 * MS, "c", 11.0)  # stamped like its image, as the frames before (else it is waited for)
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


def test_camera_info_stamped_with_every_image_is_waited_for_not_taken_from_the_previous_frame():
    """A driver stamps camera_info like its images: when one arrives after its image, the frame waits for it (the
    previous frame's may belong to another camera model) up to depth_timeout_s, then takes the latest."""
    a = FrameAssembler(slop_s=0.01, depth_timeout_s=1.0)
    for name, stamp in (("camera_info", 0), ("depth", 0), ("masks", 0)):
        a.add(name, stamp, f"{name}0", 0.0)
    assert [f.camera_info for f in a.add("image", 0, "i0", 0.0)] == ["camera_info0"]
    a.add("depth", 200 * MS, "depth1", 0.1)
    a.add("masks", 200 * MS, "masks1", 0.1)
    assert a.add("image", 200 * MS, "i1", 0.1) == []  # its camera_info is on its way
    frames = a.add("camera_info", 200 * MS, "camera_info1", 0.12)
    assert [(f.image, f.camera_info) for f in frames] == [("i1", "camera_info1")]
    # Its camera_info lost: after the wait the latest one stands in.
    a.add("depth", 400 * MS, "depth2", 0.2)
    a.add("masks", 400 * MS, "masks2", 0.2)
    assert a.add("image", 400 * MS, "i2", 0.2) == []
    assert a.poll(0.7) == []
    assert [(f.image, f.camera_info) for f in a.poll(1.25)] == [("i2", "camera_info1")]


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


# -- late depth: a frame waits for the depth of its stamp; it goes without depth only when depth is not published


def _frame_without_depth(a, stamp_ns, now_s, name):
    """camera_info, masks and image of one frame (a camera whose depth comes later, or not at all)."""
    a.add("camera_info", stamp_ns, "c", now_s)
    a.add("masks", stamp_ns, f"m_{name}", now_s)
    return a.add("image", stamp_ns, f"i_{name}", now_s)


def test_depth_arriving_after_the_image_and_masks_is_waited_for_at_a_slow_rate_and_at_start_up():
    a = FrameAssembler(slop_s=0.05, depth_timeout_s=1.0)
    completed = []
    for k in range(4):  # 0.33 Hz: every depth arrives 0.3 s after its image, 2.7 s after the previous depth
        stamp, now = k * 3000 * MS, 100.0 + 3.0 * k
        assert _frame_without_depth(a, stamp, now, k) == [], f"frame {k} was taken without waiting for its depth"
        assert a.poll(now + 0.29) == []
        completed += a.add("depth", stamp, f"d_{k}", now + 0.3)
    assert [(f.image, f.depth) for f in completed] == [(f"i_{k}", f"d_{k}") for k in range(4)]


def test_without_any_depth_frames_go_without_it_after_the_timeout_from_the_first_image():
    a = FrameAssembler(slop_s=0.05, depth_timeout_s=1.0)
    assert _frame_without_depth(a, 0, 10.0, "0") == []  # start-up: depth may still come
    assert a.poll(10.9) == []
    frames = a.poll(11.0)  # none in the 1 s since the first image: depth is not published
    assert [(f.image, f.depth) for f in frames] == [("i_0", None)]
    frames = _frame_without_depth(a, 100 * MS, 11.1, "1")  # from then on at once
    assert [(f.image, f.depth) for f in frames] == [("i_1", None)]


def test_depth_that_stops_is_declared_missing_but_one_lost_depth_message_is_not():
    a = FrameAssembler(slop_s=0.05, depth_timeout_s=1.0)
    for k in range(3):  # 1 Hz, depth after the image
        _frame_without_depth(a, k * 1000 * MS, 10.0 + k, k)
        assert len(a.add("depth", k * 1000 * MS, f"d_{k}", 10.5 + k)) == 1
    assert _frame_without_depth(a, 3000 * MS, 13.0, 3) == []  # its depth is lost ...
    assert a.poll(20.0) == [], "depth came for the image before: a lost depth message is not 'no depth'"
    # ... and depth stopped: none for 1 s and none since the image before this one
    frames = _frame_without_depth(a, 4000 * MS, 20.0, 4)
    assert [(f.image, f.depth) for f in frames] == [("i_4", None)]
    assert a.pending_images() == 0 and a.dropped_images == 1  # frame 3 never completed: counted


def test_depth_at_a_high_rate_that_stops_lets_frames_go_after_the_timeout():
    a = FrameAssembler(slop_s=0.01, depth_timeout_s=1.0)
    for k in range(10):  # 30 Hz with depth first
        a.add("depth", k * 33 * MS, f"d_{k}", k / 30)
        assert len(_frame_without_depth(a, k * 33 * MS, k / 30, k)) == 1
    waited = []
    for k in range(10, 50):  # depth stopped after frame 9
        now = k / 30
        frames = _frame_without_depth(a, k * 33 * MS, now, k)
        if frames:
            waited.append((now, frames[-1].depth))
    assert waited and waited[0][0] >= 9 / 30 + 1.0 and waited[0][1] is None
    assert all(depth is None for _, depth in waited) and len(waited) >= 8  # then every frame goes at once


# -- segmentation whose stamps never match the images


def test_segmentation_stamped_apart_from_its_image_is_reported_with_the_difference():
    a = FrameAssembler(slop_s=0.05, segmentation_slop_s=0.0)
    for k in range(5):  # a segmenter that stamps its masks 120 ms after the image
        stamp = k * 100 * MS
        a.add("depth", stamp, "d", k / 10)
        a.add("camera_info", stamp, "c", k / 10)
        assert a.add("image", stamp, "i", k / 10) == []
        assert a.add("masks", stamp + 120 * MS, "m", k / 10 + 0.05) == []
        if k < 2:
            assert a.segmentation_mismatch is None  # a mask or two can be lost: not yet
    mismatch = a.segmentation_mismatch
    assert mismatch is not None and mismatch.kind == "masks" and mismatch.offset_ns == 120 * MS
    a.add("masks", 400 * MS, "m_exact", 1.0)  # one that matches: the stamps agree again
    assert a.segmentation_mismatch is None


def test_lost_or_reordered_segmentation_is_not_a_mismatch():
    a = FrameAssembler(segmentation_slop_s=0.0)
    for k in range(20):
        stamp = k * 33 * MS
        a.add("camera_info", stamp, "c", 0.0)
        a.add("depth", stamp, "d", 0.0)
        if k % 2:  # every other frame its masks arrive before the image, the others lose theirs
            a.add("masks", stamp, "m", 0.0)
            a.add("image", stamp, "i", 0.0)
        else:
            a.add("image", stamp, "i", 0.0)
        a.add("detections", stamp + 5 * MS, "det", 0.0)  # unused: masks come too ('auto' uses either)
        assert a.segmentation_mismatch is None or k < 2, k
    b = FrameAssembler(segmentation="masks")
    for k in range(5):  # detections are not used in 'masks' mode: their stamps do not matter
        b.add("image", k * 33 * MS, "i", 0.0)
        b.add("detections", k * 33 * MS + 5 * MS, "det", 0.0)
    assert b.segmentation_mismatch is None


# -- time that jumps back


def _full_frame(a, stamp_ns, now_s, name):
    for kind in ("depth", "camera_info", "masks"):
        a.add(kind, stamp_ns, f"{kind[0]}_{name}", now_s)
    return a.add("image", stamp_ns, f"i_{name}", now_s)


def test_time_jumping_back_empties_the_old_timeline_and_is_reported():
    a = FrameAssembler(slop_s=0.05, queue_size=10, depth_timeout_s=1.0)
    for k in range(12):  # 2 Hz depth: its buffer holds 101.0 s .. 105.5 s of the old timeline
        a.add("depth", 100_000 * MS + k * 500 * MS, f"d_old_{k}", k / 2)
    a.add("camera_info", 104_500 * MS, "c", 5.0)
    a.add("masks", 104_600 * MS, "m_pending", 5.0)
    a.add("image", 104_700 * MS, "i_pending", 5.0)  # waits for its depth
    assert a.pending_images() == 1 and a.take_time_jump() is None
    # A simulator reset: back to 102.0 s, a stamp that an old depth message has too.
    a.add("camera_info", 102_000 * MS, "c_new", 6.0)
    a.add("masks", 102_000 * MS, "m_new", 6.0)
    assert a.add("image", 102_000 * MS, "i_new", 6.0) == [], "paired with depth from before the reset"
    assert a.take_time_jump() == 2_700 * MS and a.take_time_jump() is None
    assert a.pending_images() == 1 and a.dropped_images == 1  # the image from before the jump is dropped, counted
    frames = a.add("depth", 102_000 * MS, "d_new", 6.1)
    assert [(f.image, f.depth, f.masks) for f in frames] == [("i_new", "d_new", "m_new")]
    assert _full_frame(a, 102_100 * MS, 6.2, "next")[0].depth == "d_next"


def test_stamps_a_little_out_of_order_are_not_a_time_jump():
    a = FrameAssembler(slop_s=0.05)
    assert len(_full_frame(a, 10_000 * MS, 0.0, "a")) == 1
    assert len(_full_frame(a, 9_200 * MS, 0.1, "b")) == 1  # 0.8 s back: under tf2's 1 s
    assert a.take_time_jump() is None
    assert len(_full_frame(a, 8_900 * MS, 0.2, "c")) == 1  # 1.1 s behind the newest: a jump, and still a frame
    assert a.take_time_jump() == 1_100 * MS
