"""The worker side (`sam3d_ros.sam3d`) runs in SAM 3D's own environment: with numpy, pyzmq and msgpack only.

A bare environment is made from this interpreter without its site-packages (`python -I -S`) and a folder that holds
only those three packages; the test first proves that nothing else (rclpy, open3d, scipy, trimesh, ...) can be
imported there, then imports every module of the subpackage and serves a real request from a worker started there.
"""
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sam3d_ros.geometry.types import RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.sam3d import Sam3dBackend
from sam3d_ros.sam3d import frames
from sam3d_ros.tools.synthetic import random_tabletop_scene

REPO = Path(__file__).resolve().parents[2]
ALLOWED = ("numpy", "zmq", "msgpack")
ABSENT = ("rclpy", "open3d", "scipy", "trimesh", "cv2", "torch", "yaml", "sam3d_ros.geometry.transforms")
SAM3D_MODULES = sorted(p.stem for p in (REPO / "sam3d_ros" / "sam3d").glob("*.py") if p.stem != "__init__")

#: A model in the official output format that needs numpy only: a unit cube, fixed pose.
TINY_MODEL = '''
import types
import numpy as np

class CubeModel:
    def __init__(self, config_path):
        self.config_path = config_path

    def __call__(self, image, mask, seed=None, pointmap=None, **options):
        corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
        faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int32)
        return {"rotation": np.array([[1.0, 0.0, 0.0, 0.0]]), "translation": np.array([[0.1, -0.05, 0.8]]),
                "scale": np.array([[0.2, 0.2, 0.2]]), "glb": types.SimpleNamespace(vertices=corners, faces=faces)}
'''


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory):
    """A folder with only numpy, pyzmq and msgpack (links to this environment's copies) and the model module."""
    folder = tmp_path_factory.mktemp("bare_site")
    for name in ALLOWED:
        package_dir = Path(importlib.util.find_spec(name).submodule_search_locations[0])
        (folder / name).symlink_to(package_dir)
        for libs in package_dir.parent.glob(f"{'py' + name if name == 'zmq' else name}.libs"):  # bundled .so files
            (folder / libs.name).symlink_to(libs)
    (folder / "tiny_model.py").write_text(TINY_MODEL)
    return [str(folder), str(REPO)]


def run_bare(bare_path, code, **kwargs):
    prelude = f"import sys\nsys.path[:0] = {bare_path!r}\n"
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, **kwargs)


def test_the_bare_environment_lacks_everything_else(bare_path):
    result = run_bare(bare_path, f"""
        import importlib.util
        print([n for n in {ABSENT!r}[:-1] if importlib.util.find_spec(n) is not None])
        import numpy, zmq, msgpack
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importable in the bare environment: {result.stdout}"


def test_every_worker_side_module_imports_there(bare_path):
    assert {"worker", "wire", "frames", "standin"} <= set(SAM3D_MODULES)
    result = run_bare(bare_path, f"""
        import importlib, json, sys
        for name in {SAM3D_MODULES!r}:
            importlib.import_module("sam3d_ros.sam3d." + name)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                                {{"rclpy", "open3d", "scipy", "trimesh", "cv2", "torch"}} or m in {ABSENT!r})))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_a_worker_started_there_serves_the_node_side(bare_path, tmp_path):
    """`sam3d-ros-worker` in the bare environment answers the `sam3d` backend; the conversion is exact."""
    config = tmp_path / "pipeline.yaml"
    config.write_text("tiny model\n")
    worker = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", f"import sys\nsys.path[:0] = {bare_path!r}\n"
         "from sam3d_ros.sam3d.worker import main\nsys.exit(main())",
         "--sam3d-config", str(config), "--bind", "tcp://127.0.0.1:*", "--exit-with-parent", "--preload",
         "--inference", "tiny_model:CubeModel"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    backend = None
    try:
        line = worker.stdout.readline()
        assert line.startswith("sam3d worker ready on "), line + worker.stderr.read() if worker.poll() is not None else line
        backend = Sam3dBackend(worker=line.split(" on ", 1)[1].strip(), timeout_s=20, refine=False)
        scene = random_tabletop_scene(seed=1, n_objects=1)
        obj = scene.objects[0]
        result = backend.reconstruct(RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics),
                                     scene.mask(obj.object_id), SceneContext(), str(obj.object_id))
    finally:
        if backend is not None:
            backend.close()
        worker.terminate()
        worker.wait(timeout=10)
    expected = frames.T_cam_obj_from_p3d_pose(np.array([1.0, 0, 0, 0]), np.array([0.1, -0.05, 0.8]))
    np.testing.assert_allclose(result.T_cam_obj, expected, atol=1e-9)
    np.testing.assert_allclose(np.sort(np.abs(result.mesh_obj.vertices), axis=0), np.full((8, 3), 0.1), atol=1e-6)
