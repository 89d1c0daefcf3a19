"""The worker's first contact with the official pipeline (issue 16), against a fake official environment.

The fake checkout reproduces what the official code at commit cf06676 does on a real GPU machine:
- importing `notebook/inference.py` reads `CONDA_PREFIX` and imports torch; the pipeline hard-codes "cuda";
- with a caller's point map the layout post-optimisation infers the intrinsics from that map, which for the
  PyTorch3D convention gives a degenerate camera (fx = fy = 0), and the render-and-compare then spoils the pose;
  without a point map MoGe's intrinsics are good and the post-optimisation refines the pose a little;
- `decode_formats` without "gaussian" raises KeyError 'gaussian', ["gaussian"] alone gives no glb, and
  `with_mesh_postprocess` / `with_texture_baking` import nvdiffrast (absent from the official environment).
A fake `torch` (numpy tensors, a fake GPU named after CUDA_VISIBLE_DEVICES) stands in for CUDA. Every worker is a
real subprocess (`spawn_worker`, ended in a fixture's finally); what the fake pipeline received is read from the
JSON lines it writes to $FAKE_RECORD.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sam3d_ros.geometry.types import RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.base import ReconstructionError
from sam3d_ros.reconstruction.backends.sam3d import Sam3dBackend, WorkerClient
from sam3d_ros.reconstruction.files import write_results
from sam3d_ros.ros.node_statistics import NodeStatistics
from sam3d_ros.sam3d import frames, wire
from sam3d_ros.sam3d.worker import spawn_worker
from sam3d_ros.tools.synthetic import random_tabletop_scene

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "sam3d_ros.sam3d.worker:OfficialPipeline"
#: The fake model's own estimate, and what the layout post-optimisation makes of it.
MODEL_T = [0.02, -0.01, 0.9]
GOOD_LAYOUT_DZ = 0.005  # MoGe intrinsics: a small correction
BAD_LAYOUT_Z_FACTOR = 3.0  # degenerate camera: the pose is spoilt

FAKE_TORCH = '''
"""A fake torch: numpy arrays for tensors, one fake GPU per id in CUDA_VISIBLE_DEVICES (none when it is empty)."""
import os
import types

import numpy as np

__version__ = "2.5.1+fake"
version = types.SimpleNamespace(cuda="12.1")


def from_numpy(array):
    return array


def _visible():
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    return [d for d in value.split(",") if d.strip() and d.strip() != "-1"]


class cuda:
    @staticmethod
    def is_available():
        return bool(_visible())

    @staticmethod
    def device_count():
        return len(_visible())

    @staticmethod
    def current_device():
        if not _visible():
            raise RuntimeError("No CUDA GPUs are available")
        return 0

    @staticmethod
    def get_device_name(index=0):
        return "Fake GPU " + _visible()[index]

    @staticmethod
    def get_device_properties(index=0):
        return types.SimpleNamespace(total_memory=80 * 2**30, name=cuda.get_device_name(index))

    @staticmethod
    def reset_peak_memory_stats(*args):
        pass

    @staticmethod
    def max_memory_allocated(*args):
        return 3 * 2**30

    @staticmethod
    def synchronize(*args):
        pass

    @staticmethod
    def empty_cache():
        pass
'''

FAKE_OFFICIAL = '''
import json
import os
import types

os.environ["CUDA_HOME"] = os.environ["CONDA_PREFIX"]  # as the official notebook/inference.py does

import numpy as np
import torch


def _record(**event):
    path = os.environ.get("FAKE_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\\n")


def infer_intrinsics_from_pointmap(pointmap):
    """Focal from u - cx = f x / z: negative for the PyTorch3D convention (x negated), then clamped: fx = fy = 0."""
    h, w = pointmap.shape[:2]
    v, u = np.mgrid[0:h, 0:w]
    ok = np.isfinite(pointmap).all(axis=-1) & (np.abs(pointmap[..., 0]) > 1e-3)
    ratio = pointmap[..., 0][ok] / pointmap[..., 2][ok]
    f = float(np.sum((u[ok] - (w - 1) / 2) * ratio) / np.sum(ratio * ratio))
    return max(f, 0.0), max(f, 0.0)


class _Pipeline:
    def __init__(self, device="cuda"):
        torch.cuda.current_device()  # hard-coded "cuda": fails without a visible GPU

    def sample_sparse_structure(self):
        return {"rotation": np.array([[1.0, 0.0, 0.0, 0.0]], np.float32),
                "translation": np.array([[%(MODEL_T)s]], np.float32),
                "scale": np.full((1, 3), 0.1, np.float32),
                "coords": np.array([[0, x, y, z] for x in (30, 33) for y in (30, 33) for z in (30, 33)])}

    def sample_slat(self):
        return "slat"

    def decode_slat(self, formats):
        outputs = {}
        if "mesh" in formats:
            outputs["mesh"] = [np.array([[x, y, z] for x in (-0.3, 0.3) for y in (-0.3, 0.3) for z in (-0.3, 0.3)])]
        if "gaussian" in formats:
            outputs["gaussian"] = ["splats"]
        return outputs

    def postprocess_slat_output(self, outputs, with_mesh_postprocess, with_texture_baking, use_vertex_color):
        glb = None
        if "mesh" in outputs:
            appearance = outputs["gaussian"][0]  # the official to_glb reads the Gaussians: KeyError without them
            if with_mesh_postprocess or with_texture_baking:
                import nvdiffrast.torch  # noqa: F401  (utils3d's RastContext)
            vertices = outputs["mesh"][0].astype(np.float32) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float32)
            faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                              [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
            colours = np.full((8, 4), 200, np.uint8)
            glb = types.SimpleNamespace(vertices=vertices, faces=faces,
                                        visual=types.SimpleNamespace(kind="vertex", vertex_colors=colours))
        outputs["glb"] = glb
        return outputs

    def run_post_optimization(self, glb, intrinsics, pose):
        translation = pose["translation"].copy()
        if min(intrinsics) <= 0:  # degenerate camera: the render-and-compare spoils the pose
            translation[0, 2] *= %(BAD)s
        else:
            translation[0, 2] += %(GOOD)s
        return {"translation": translation}

    def run(self, image, mask=None, seed=None, stage1_only=False, with_mesh_postprocess=True, with_texture_baking=True,
            with_layout_postprocess=True, use_vertex_color=False, stage1_inference_steps=None,
            stage2_inference_steps=None, use_stage1_distillation=False, use_stage2_distillation=False, pointmap=None,
            decode_formats=None, estimate_plane=False):
        event = {"event": "run", "seed": seed, "alpha": int((image[..., 3] == 255).sum()), "pointmap": pointmap is not None,
                 "with_layout_postprocess": with_layout_postprocess, "with_mesh_postprocess": with_mesh_postprocess,
                 "with_texture_baking": with_texture_baking, "use_vertex_color": use_vertex_color,
                 "decode_formats": decode_formats, "stage1_only": stage1_only}
        intrinsics = (1.0, 1.0) if pointmap is None else infer_intrinsics_from_pointmap(np.asarray(pointmap))
        pose = self.sample_sparse_structure()
        if os.environ.get("FAKE_BAD_OUTPUT") == "rotation_shape":
            pose["rotation"] = pose["rotation"][0]
        if stage1_only:
            _record(**event)
            return dict(pose, voxel=pose["coords"][:, 1:] / 64 - 0.5)
        self.sample_slat()
        outputs = self.postprocess_slat_output(self.decode_slat(decode_formats or ["gaussian", "mesh"]),
                                               with_mesh_postprocess, with_texture_baking, use_vertex_color)
        event["layout_intrinsics"] = None
        if with_layout_postprocess and outputs["glb"] is not None:
            event["layout_intrinsics"] = list(intrinsics)
            pose.update(self.run_post_optimization(outputs["glb"], intrinsics, pose))
        _record(**event)
        return dict(pose, **outputs)


class Inference:
    def __init__(self, config_file, compile=False):
        self.config_file, self.compile = config_file, compile
        self._pipeline = _Pipeline()
        _record(event="init", config_file=config_file, compile=compile,
                cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), cuda_home=os.environ["CUDA_HOME"])

    def __call__(self, image, mask, seed=None, pointmap=None):
        rgba = np.concatenate([image[..., :3], mask[..., None].astype(np.uint8) * 255], axis=-1)
        return self._pipeline.run(rgba, None, seed, stage1_only=False, with_mesh_postprocess=False,
                                  with_texture_baking=False, with_layout_postprocess=True, use_vertex_color=True,
                                  stage1_inference_steps=None, pointmap=pointmap)
''' % {"MODEL_T": ", ".join(map(str, MODEL_T)), "BAD": BAD_LAYOUT_Z_FACTOR, "GOOD": GOOD_LAYOUT_DZ}


# ------------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def fake_env(tmp_path_factory):
    """(checkout, pipeline.yaml, folder holding the fake torch)."""
    root = tmp_path_factory.mktemp("fake_official")
    checkout = root / "sam-3d-objects"
    (checkout / "notebook").mkdir(parents=True)
    (checkout / "notebook" / "inference.py").write_text(FAKE_OFFICIAL)
    hf = checkout / "checkpoints" / "hf"
    hf.mkdir(parents=True)
    config = hf / "pipeline.yaml"
    config.write_text("_target_: sam3d_objects.pipeline.inference_pipeline_pointmap.InferencePipelinePointMap\n"
                      "ss_generator_config_path: ss_generator.yaml\nss_generator_ckpt_path: ss_generator.ckpt\n"
                      "slat_decoder_gs_4_ckpt_path: null\n")
    (hf / "ss_generator.yaml").write_text("module: {}\n")
    (hf / "ss_generator.ckpt").write_bytes(b"\0" * 1024)
    site = root / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(FAKE_TORCH)
    return checkout, config, site


@pytest.fixture
def official_env(fake_env, monkeypatch, tmp_path):
    """The environment of an activated sam-3d-objects conda env with one GPU; returns the record file."""
    checkout, _, site = fake_env
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PYTHONPATH", f"{site}:{REPO}")
    monkeypatch.setenv("CONDA_PREFIX", str(tmp_path / "conda"))
    monkeypatch.setenv("SAM3D_REPO", str(checkout))
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("FAKE_BAD_OUTPUT", raising=False)
    return record


@pytest.fixture
def start_worker(fake_env, tmp_path):
    processes = []

    def start(*extra, inference=None):
        log = open(tmp_path / f"worker_{len(processes)}.log", "w")
        try:
            process, endpoint = spawn_worker(fake_env[1], inference, extra_args=("--preload", *extra), stderr=log)
        except RuntimeError as exc:
            log.close()
            raise AssertionError(f"{exc}: {(tmp_path / f'worker_{len(processes)}.log').read_text()[-2000:]}") from None
        log.close()
        processes.append(process)
        return endpoint

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


@pytest.fixture(scope="module")
def scene():
    return random_tabletop_scene(seed=5, n_objects=1)


def runs(record):
    return [e for e in map(json.loads, record.read_text().splitlines()) if e["event"] == "run"]


def reconstruct(backend, scene, depth=True):
    obj = scene.objects[0]
    frame = RGBDFrame(scene.rgb, scene.depth_m if depth else None, scene.intrinsics)
    return backend.reconstruct(frame, scene.mask(obj.object_id), SceneContext(), str(obj.object_id), obj.name)


def worker_command(config, *extra):
    return [sys.executable, "-m", "sam3d_ros.sam3d.worker", "--sam3d-config", str(config), *extra]


@pytest.fixture
def backends():
    made = []

    def make(**options):
        made.append(Sam3dBackend(**options))
        return made[-1]

    try:
        yield make
    finally:
        for backend in made:
            backend.close()


# ------------------------------------------------------------------------------------------------------------------
# 1. Layout post-optimisation: off when the request brings a point map


def test_layout_postprocess_is_off_when_the_worker_supplies_the_point_map(official_env, start_worker, backends, scene):
    endpoint = start_worker()  # the default factory: the official Inference
    backend = backends(worker=endpoint, timeout_s=20, refine=False)
    with_depth = reconstruct(backend, scene)
    call = runs(official_env)[-1]
    assert call["pointmap"] and call["with_layout_postprocess"] is False and call["layout_intrinsics"] is None
    # The pose is the model's own (the degenerate camera would have tripled the distance).
    expected = frames.T_cam_obj_from_p3d_pose(np.array([1.0, 0, 0, 0]), np.array(MODEL_T))
    np.testing.assert_allclose(with_depth.T_cam_obj, expected, atol=1e-6)
    assert with_depth.info["layout_postprocess"] is False
    # The rest of the official wrapper's call is unchanged: mask in alpha, vertex colours, no post-processing.
    assert call["alpha"] == int(scene.mask(scene.objects[0].object_id).sum()) and call["use_vertex_color"]
    assert not call["with_mesh_postprocess"] and not call["with_texture_baking"]
    # Without a point map MoGe's intrinsics are good: the official default (on) is kept.
    without_depth = reconstruct(backend, scene, depth=False)
    call = runs(official_env)[-1]
    assert not call["pointmap"] and call["with_layout_postprocess"] is True and min(call["layout_intrinsics"]) > 0
    assert without_depth.T_cam_obj[2, 3] == pytest.approx(MODEL_T[2] + GOOD_LAYOUT_DZ, abs=1e-6)


def test_layout_postprocess_on_forces_it_and_shows_why_it_is_off_by_default(official_env, start_worker, backends,
                                                                          scene):
    endpoint = start_worker("--layout-postprocess", "on", inference=PIPELINE)
    result = reconstruct(backends(worker=endpoint, timeout_s=20, refine=False), scene)
    call = runs(official_env)[-1]
    assert call["with_layout_postprocess"] is True and call["layout_intrinsics"] == [0.0, 0.0]  # degenerate camera
    assert result.T_cam_obj[2, 3] == pytest.approx(MODEL_T[2] * BAD_LAYOUT_Z_FACTOR, abs=1e-5)


# ------------------------------------------------------------------------------------------------------------------
# 2. Speed options the official environment cannot run; no mesh is said, never substituted silently


@pytest.mark.parametrize("flags, words", [
    (("--decode-formats", "mesh"), ("decode_formats ['mesh']", "KeyError 'gaussian'")),
    (("--mesh-postprocess",), ("with_mesh_postprocess=True", "nvdiffrast")),
    (("--texture-baking",), ("with_texture_baking=True", "nvdiffrast")),
    (("--decode-formats", "gaussian,radiance_field"), ("radiance_field",)),
])
def test_impossible_speed_options_are_refused_at_worker_start_in_one_line(fake_env, flags, words):
    done = subprocess.run(worker_command(fake_env[1], "--inference", PIPELINE, "--preload", *flags),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sam3d-ros worker: error: "), done.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_impossible_speed_options_in_a_request_get_a_clear_error_reply(official_env, start_worker, scene, backends):
    endpoint = start_worker(inference=PIPELINE)
    mask = scene.mask(scene.objects[0].object_id)
    client = WorkerClient([endpoint], timeout_s=20)
    try:
        for options, words in (({"decode_formats": ["mesh"]}, "KeyError 'gaussian'"),
                               ({"with_mesh_postprocess": True}, "nvdiffrast"),
                               ({"with_texture_baking": True, "with_mesh_postprocess": True}, "nvdiffrast")):
            request = wire.WireMessage("reconstruct", "r", {"options": options}, {"image": scene.rgb, "mask": mask})
            reply, _ = client.request(request)
            assert reply.type == "error" and reply.meta["code"] == "bad_request", reply.meta
            assert words in reply.meta["message"] and "\n" not in reply.meta["message"]
        assert runs(official_env) == []  # none of them reached the pipeline
    finally:
        client.close()
    with pytest.raises(ReconstructionError, match="nvdiffrast"):
        reconstruct(backends(worker=endpoint, timeout_s=20, with_mesh_postprocess=True), scene)
    assert reconstruct(backends(worker=endpoint, timeout_s=20, refine=False), scene).info["mesh_source"] == "model"


def test_gaussians_only_gives_no_mesh_and_every_output_says_why(official_env, start_worker, backends, scene, tmp_path):
    # Per request: the reply says the model gave no mesh, and why.
    client = WorkerClient([start_worker(inference=PIPELINE)], timeout_s=20)
    try:
        request = wire.WireMessage("reconstruct", "g", {"options": {"decode_formats": ["gaussian"]}},
                                   {"image": scene.rgb, "mask": scene.mask(scene.objects[0].object_id)})
        reply, _ = client.request(request)
    finally:
        client.close()
    assert reply.type == "result" and "glb_vertices" not in reply.arrays and "voxel" in reply.arrays
    assert reply.meta.get("mesh_source") == "voxels", reply.meta
    assert reply.meta.get("no_mesh_reason") == "decode_formats ['gaussian'] has no 'mesh': the model decoded no mesh"
    # As the worker's default, through the backend and every output.
    endpoint = start_worker("--decode-formats", "gaussian", inference=PIPELINE)
    result = reconstruct(backends(worker=endpoint, timeout_s=20, refine=False), scene)
    assert runs(official_env)[-1]["decode_formats"] == ["gaussian"]
    assert result.info["mesh_source"] == "voxel_hull" and result.info["mesh_from_voxels"]
    assert "decode_formats ['gaussian'] has no 'mesh'" in result.info["no_mesh_reason"]
    # objects.json (CLI, ~/save_scene)
    entry = json.loads(write_results(tmp_path / "out", "cam", [result]).read_text())["objects"][0]
    assert entry["mesh_source"] == "voxel_hull" and entry["no_mesh_reason"] == result.info["no_mesh_reason"]
    assert entry["timings"]["model_stages_s"]["decode"] >= 0 and entry["timings"]["gpu_peak_mib"] == 3 * 1024
    # /diagnostics
    stats = NodeStatistics()
    stats.count_reconstructed([result])
    scheduler = type("S", (), {"running": 0, "waiting": 0, "submitted": 1, "replaced": 0})()
    _, _, level, message, values = stats.statuses("n", "sam3d", scheduler, [])[1]
    assert level == "warn" and "decode_formats ['gaussian'] has no 'mesh'" in message
    assert values["meshes not from the model"] == 1
    assert values["why no model mesh (last)"] == result.info["no_mesh_reason"]


# ------------------------------------------------------------------------------------------------------------------
# 3. Preflight, --device, --compile


def test_preflight_here_is_one_line_saying_what_is_missing(tmp_path, monkeypatch):
    """This machine: no GPU, no weights, no conda env, no checkout: one line naming each, exit 1, no traceback."""
    for name in ("CONDA_PREFIX", "SAM3D_REPO", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    done = subprocess.run(worker_command(tmp_path / "checkpoints" / "hf" / "pipeline.yaml", "--preflight-only"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sam3d-ros worker: preflight failed: "), done.stderr
    for missing in ("pipeline.yaml not found", "CONDA_PREFIX is not set", "no sam-3d-objects checkout"):
        assert missing in lines[0]
    assert "no CUDA device visible" in lines[0] or "torch cannot be imported" in lines[0]


def test_preflight_in_the_official_environment_reports_and_passes(official_env, fake_env):
    done = subprocess.run(worker_command(fake_env[1], "--preflight-only", "--device", "cuda:1", "--compile"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Fake GPU 1" in out and "CUDA_VISIBLE_DEVICES=1" in out and "1 checkpoints named in pipeline.yaml" in out
    assert "conda environment" in out and "sam-3d-objects checkout" in out
    assert "output: rotation (1, 4)" in out and "glb mesh, 8 vertices, 12 faces, vertex colours" in out
    assert "layout post-optimisation: only for requests without a point map" in out
    passed = [line for line in out.splitlines() if line.startswith("preflight: passed in ")]
    assert len(passed) == 1 and "model load" in passed[0] and "tiny inference" in passed[0]
    assert "stage1" in passed[0] and "decode" in passed[0] and "peak GPU memory 3.0 GiB" in passed[0]
    init = [json.loads(line) for line in official_env.read_text().splitlines()][0]
    assert init["compile"] is True and init["cuda_visible_devices"] == "1"
    run = runs(official_env)[0]
    assert run["pointmap"] and run["with_layout_postprocess"] is False  # the tiny inference calls like the backend


def test_compile_reaches_the_official_pipeline_factory(official_env, start_worker, backends, scene):
    endpoint = start_worker("--compile", inference=PIPELINE)
    reconstruct(backends(worker=endpoint, timeout_s=20, refine=False), scene)
    init = json.loads(official_env.read_text().splitlines()[0])
    assert init["event"] == "init" and init["compile"] is True


def test_preflight_fails_in_one_line_on_an_output_that_breaks_the_contract(official_env, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_BAD_OUTPUT", "rotation_shape")
    done = subprocess.run(worker_command(fake_env[1], "--preflight"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "sam3d-ros worker: preflight failed: output 'rotation' has shape (4,), the " \
                                  "contract is (1, 4)", done.stderr
    assert "sam3d worker ready" not in done.stdout  # it never served


@pytest.mark.parametrize("visible, device, words", [
    ("4,5", "cuda:3", "only 2 GPU(s) visible"), (None, "cpu", "cuda or cuda:N"), (None, "cuda:x", "cuda or cuda:N")])
def test_device_problems_are_one_line(official_env, fake_env, monkeypatch, visible, device, words):
    if visible:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    done = subprocess.run(worker_command(fake_env[1], "--preflight-only", "--device", device),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and words in done.stderr


def test_device_counts_the_gpus_already_visible(official_env, fake_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    done = subprocess.run(worker_command(fake_env[1], "--preflight-only", "--device", "cuda:1"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "CUDA_VISIBLE_DEVICES=5" in done.stdout and "Fake GPU 5" in done.stdout


def test_without_conda_prefix_the_preflight_says_to_activate_the_environment(official_env, fake_env, monkeypatch):
    monkeypatch.delenv("CONDA_PREFIX")
    done = subprocess.run(worker_command(fake_env[1], "--preflight-only"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == ("sam3d-ros worker: preflight failed: CONDA_PREFIX is not set: activate the "
                                   "sam-3d-objects environment first (conda activate sam3d-objects; its "
                                   "notebook/inference.py reads CONDA_PREFIX)")


# ------------------------------------------------------------------------------------------------------------------
# 4. scripts/gpu_smoke.sh here


def test_gpu_smoke_here_says_what_is_missing_in_one_line(monkeypatch):
    for name in ("CONDA_PREFIX", "SAM3D_REPO", "SAM3D_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_smoke.sh")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_smoke: cannot run here: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "CONDA_PREFIX" in lines[0] and "SAM3D_REPO" in lines[0]
