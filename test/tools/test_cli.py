"""`sam3d-ros reconstruct`: the file contract (inputs, objects.json, meshes) and exit status 2 on bad input."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from sam3d_ros.reconstruction.files import write_camera_yaml
from sam3d_ros.tools.synthetic import random_tabletop_scene

ROOT = Path(__file__).resolve().parents[2]

BOXES_AND_CANS = ["002_master_chef_can", "003_cracker_box", "004_sugar_box", "005_tomato_soup_can", "010_potted_meat_can"]


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory):
    """A rendered frame written as the CLI's input files."""
    scene = random_tabletop_scene(31, n_objects=3, distance_range=(0.5, 0.9), names=BOXES_AND_CANS)
    d = tmp_path_factory.mktemp("frame")
    cv2.imwrite(str(d / "rgb.png"), cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR))
    depth_mm = np.where(np.isfinite(scene.depth_m), np.round(scene.depth_m * 1000), 0).astype(np.uint16)
    cv2.imwrite(str(d / "depth.png"), depth_mm)
    np.save(d / "depth.npy", scene.depth_m.astype(np.float32))
    cv2.imwrite(str(d / "labels.png"), scene.labels.astype(np.uint16))
    write_camera_yaml(d / "cam.yaml", scene.intrinsics)
    detections = []
    for obj in scene.objects:
        rows, cols = np.nonzero(scene.labels == obj.object_id)
        detections.append({"id": f"obj{obj.object_id}", "label": obj.name, "score": 0.9,
                           "bbox": [int(cols.min()) - 3, int(rows.min()) - 3, int(cols.max()) + 4, int(rows.max()) + 4]})
    (d / "det.json").write_text(json.dumps(detections))
    return scene, d


def run_cli(*args, timeout_s: float = 120):
    """The installed console script, as other tools call it, running this checkout's code (a git worktree's too:
    the editable install points at the main checkout)."""
    exe = shutil.which("sam3d-ros") or sys.executable
    cmd = [exe] if exe.endswith("sam3d-ros") else [exe, "-m", "sam3d_ros.tools.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=timeout_s, env=env)


def base_args(d, out, depth="depth.png"):
    return ["reconstruct", "--rgb", d / "rgb.png", "--depth", d / depth, "--depth-scale", "0.001",
            "--camera-info", d / "cam.yaml", "--out", out]


def test_masks_give_objects_json_and_coloured_meshes(frame_files, tmp_path):
    scene, d = frame_files
    result = run_cli(*base_args(d, tmp_path), "--masks", d / "labels.png")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "objects.json").read_text())
    assert data["frame_id"] == "camera_color_optical_frame"
    by_id = {o["id"]: o for o in data["objects"]}
    assert sorted(by_id) == sorted(str(o.object_id) for o in scene.objects)
    for truth in scene.objects:
        entry = by_id[str(truth.object_id)]
        assert set(entry) >= {"id", "label", "score", "position", "orientation_xyzw", "size", "mesh"}
        assert np.linalg.norm(np.array(entry["position"]) - truth.center_cam) < 0.025
        assert np.linalg.norm(entry["orientation_xyzw"]) == pytest.approx(1.0)
        assert entry["size"][2] == pytest.approx(truth.size_model[2], abs=0.01)
        mesh = trimesh.load(tmp_path / entry["mesh"], process=False)
        assert mesh.is_watertight and len(mesh.visual.vertex_colors) == len(mesh.vertices)
        np.testing.assert_allclose(mesh.extents, entry["size"], atol=3e-3)  # metres, object frame
        assert (tmp_path / entry["mesh"].replace(".ply", ".glb")).is_file()


def test_npy_depth_and_detection_boxes(frame_files, tmp_path):
    scene, d = frame_files
    result = run_cli(*base_args(d, tmp_path, "depth.npy"), "--detections", d / "det.json")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "objects.json").read_text())
    by_id = {o["id"]: o for o in data["objects"]}
    for truth in scene.objects:
        entry = by_id[f"obj{truth.object_id}"]
        assert entry["label"] == truth.name and entry["score"] == pytest.approx(0.9)
        assert np.linalg.norm(np.array(entry["position"]) - truth.center_cam) < 0.04


def test_missing_file_exits_2_with_one_line(frame_files, tmp_path):
    _, d = frame_files
    result = run_cli(*base_args(d, tmp_path), "--masks", d / "nope.png")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"sam3d-ros: error: label image file not found: {d / 'nope.png'}"]


def test_size_mismatch_empty_mask_and_invalid_depth_exit_2(frame_files, tmp_path):
    scene, d = frame_files
    cv2.imwrite(str(tmp_path / "small.png"), scene.labels[::2, ::2].astype(np.uint16))
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros_like(scene.labels, dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "zero_depth.png"), np.zeros(scene.labels.shape, np.uint16))
    cases = {
        "small.png": "label image is 320x240 but the colour image is 640x480",
        "empty.png": "has no object pixel",
    }
    for name, expected in cases.items():
        result = run_cli(*base_args(d, tmp_path / "out"), "--masks", tmp_path / name)
        assert result.returncode == 2 and expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    shutil.copy(tmp_path / "zero_depth.png", d / "zero_depth.png")
    result = run_cli(*base_args(d, tmp_path / "out", "zero_depth.png"), "--masks", d / "labels.png")
    assert result.returncode == 2 and "no valid pixel" in result.stderr


def test_unknown_id_exits_2_but_writes_the_others(frame_files, tmp_path):
    scene, d = frame_files
    first = str(scene.objects[0].object_id)
    result = run_cli(*base_args(d, tmp_path), "--masks", d / "labels.png", "--ids", first, "99")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"sam3d-ros: error: object 99: unknown id (present: {', '.join(sorted(str(o.object_id) for o in scene.objects))})"
    ]
    data = json.loads((tmp_path / "objects.json").read_text())
    assert [o["id"] for o in data["objects"]] == [first]


def test_bad_detection_json_and_unknown_backend(frame_files, tmp_path):
    _, d = frame_files
    (tmp_path / "bad.json").write_text('[{"id": 1, "bbox": [10, 10, 5, 20]}]')
    result = run_cli(*base_args(d, tmp_path), "--detections", tmp_path / "bad.json")
    assert result.returncode == 2 and "bbox [10, 10, 5, 20] is empty" in result.stderr
    result = run_cli(*base_args(d, tmp_path), "--masks", d / "labels.png", "--backend", "nerf")
    assert result.returncode == 2 and "unknown backend 'nerf'" in result.stderr


def test_sam3d_backend_without_a_worker_exits_2_per_object(frame_files, tmp_path):
    scene, d = frame_files
    result = run_cli(*base_args(d, tmp_path), "--masks", d / "labels.png", "--backend", "sam3d",
                     "--sam3d-worker", "tcp://127.0.0.1:9", "--sam3d-timeout", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(scene.objects) and all(line.startswith("sam3d-ros: error: object ") for line in lines)
    assert json.loads((tmp_path / "objects.json").read_text())["objects"] == []


def _one_error_line(result):
    """The one error line of a run that exits 2 (--detections also says on stderr which box segmentation it uses)."""
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("box segmentation: ")]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("sam3d-ros: error: "), result.stderr
    return lines[0]


def test_depth_in_the_wrong_unit_exits_2_naming_the_option_that_fixes_it(frame_files, tmp_path):
    scene, d = frame_files
    np.save(tmp_path / "depth_mm.npy", (scene.depth_m * 1000).astype(np.float32))  # .npy in millimetres
    line = _one_error_line(run_cli(*base_args(d, tmp_path / "out", tmp_path / "depth_mm.npy"), "--masks", d / "labels.png"))
    assert "is beyond the working range 0.1-10 m (--depth-range): a .npy depth must be float metres" in line
    assert "in millimetres?" in line
    # The label image given as depth: ids 1-3 read as millimetres.
    line = _one_error_line(run_cli(*base_args(d, tmp_path / "out", d / "labels.png"), "--masks", d / "labels.png"))
    assert "is below the working range 0.1-10 m (--depth-range)" in line and "--depth-scale 1" in line and "label image" in line
    # A 16-bit PNG at 5000 units per metre read as millimetres: 5x too far, still inside 0.1-10 m for this tabletop,
    # so it takes a range that fits the setup to see it.
    depth_5000 = np.where(np.isfinite(scene.depth_m), np.round(scene.depth_m * 5000), 0).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "depth_5000.png"), depth_5000)
    args = base_args(d, tmp_path / "out", tmp_path / "depth_5000.png") + ["--masks", d / "labels.png"]
    assert run_cli(*args).returncode == 0
    line = _one_error_line(run_cli(*args, "--depth-range", "0.2", "2"))
    assert "is beyond the working range 0.2-2 m (--depth-range)" in line and "--depth-scale" in line and "0.0002" in line
    assert run_cli(*args, "--depth-range", "0.2", "2", "--depth-scale", "0.0002").returncode == 0


def test_unwritable_out_exits_2_with_one_line(frame_files, tmp_path):
    _, d = frame_files
    (tmp_path / "a_file").write_text("")
    line = _one_error_line(run_cli(*base_args(d, tmp_path / "a_file" / "out"), "--masks", d / "labels.png"))
    assert f"cannot write to --out {tmp_path / 'a_file' / 'out'}: " in line


def _camera_args(d, out):
    return ["reconstruct", "--rgb", d / "rgb.png", "--depth", d / "depth.png", "--masks", d / "labels.png",
            "--out", out, "--camera-info"]


def test_malformed_camera_yaml_is_one_line(frame_files, tmp_path):
    _, d = frame_files
    (tmp_path / "bad.yaml").write_text("image_width: 640\nimage_height: 480\ncamera_matrix:\n  data: [1, 2\n  rows: 3\n")
    args = _camera_args(d, tmp_path / "out")
    line = _one_error_line(run_cli(*args, tmp_path / "bad.yaml"))
    assert f"camera info {tmp_path / 'bad.yaml'} is not valid YAML: " in line and "(line 5, column" in line
    (tmp_path / "other.yaml").write_text("fx: 600\n")
    line = _one_error_line(run_cli(*args, tmp_path / "other.yaml"))
    assert "neither a camera_calibration YAML" in line and "nor a CameraInfo message (width, height, k)" in line


def test_camera_info_saved_by_ros2_topic_echo_is_accepted(frame_files, tmp_path):
    scene, d = frame_files
    args = _camera_args(d, tmp_path / "out")
    # `ros2 topic echo --once /camera/camera_info > cam.yaml`: the message as YAML, lower-case fields, then '---'.
    K = scene.intrinsics.K
    P = np.hstack([K, np.zeros((3, 1))])
    block = lambda name, values: f"{name}:\n" + "".join(f"- {float(v)}\n" for v in np.ravel(values))
    echo = ("header:\n  stamp:\n    sec: 1700000000\n    nanosec: 5\n  frame_id: camera_color_optical_frame\n"
            f"height: {scene.intrinsics.height}\nwidth: {scene.intrinsics.width}\ndistortion_model: plumb_bob\n"
            + block("d", np.zeros(5)) + block("k", K) + block("r", np.eye(3)) + block("p", P)
            + "binning_x: 0\nbinning_y: 0\nroi:\n  x_offset: 0\n  y_offset: 0\n  height: 0\n  width: 0\n"
            "  do_rectify: false\n---\n")
    (tmp_path / "echo.yaml").write_text(echo)
    result = run_cli(*args, tmp_path / "echo.yaml")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "out" / "objects.json").read_text())
    assert sorted(o["id"] for o in data["objects"]) == sorted(str(o.object_id) for o in scene.objects)


def test_no_object_to_reconstruct_exits_2_for_detections_as_for_masks(frame_files, tmp_path):
    scene, d = frame_files
    (tmp_path / "none.json").write_text("[]")
    line = _one_error_line(run_cli(*base_args(d, tmp_path / "out"), "--detections", tmp_path / "none.json"))
    assert line == f"sam3d-ros: error: detections {tmp_path / 'none.json'} is an empty list: no object to reconstruct"
    cv2.imwrite(str(tmp_path / "empty.png"), np.zeros_like(scene.labels, dtype=np.uint8))
    line = _one_error_line(run_cli(*base_args(d, tmp_path / "out"), "--masks", tmp_path / "empty.png"))
    assert "has no object pixel" in line
    assert not (tmp_path / "out" / "objects.json").exists()


def test_a_box_off_the_image_names_the_box_and_the_image_size_and_the_others_are_written(frame_files, tmp_path):
    scene, d = frame_files
    detections = json.loads((d / "det.json").read_text()) + [{"id": "off", "bbox": [700, 20, 760, 90]}]
    (tmp_path / "det.json").write_text(json.dumps(detections))
    result = run_cli(*base_args(d, tmp_path / "out"), "--detections", tmp_path / "det.json", "--box-segmentation", "depth")
    line = _one_error_line(result)
    assert line == "sam3d-ros: error: object off: box [700, 20, 760, 90] (x_min, y_min, x_max, y_max) lies outside the 640x480 image"
    data = json.loads((tmp_path / "out" / "objects.json").read_text())
    assert sorted(o["id"] for o in data["objects"]) == sorted(f"obj{o.object_id}" for o in scene.objects)
