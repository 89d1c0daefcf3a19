"""The `sam3d` backend through real `sam3d-ros worker` processes on 127.0.0.1, with the ground-truth stand-in.

Every worker is a subprocess (`python -m sam3d_ros.sam3d.worker`, port picked by the worker, `--preload`) ended in
a fixture's finally. Time bounds on failures are correctness bounds on a hang (wall < timeout + margin).
"""
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from sam3d_ros.geometry.transforms import make_transform, rotation_angle_between
from sam3d_ros.geometry.types import RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.base import ReconstructionError
from sam3d_ros.reconstruction.backends.sam3d import Sam3dBackend, WorkerClient, model_pose_from_arrays
from sam3d_ros.sam3d import wire
from sam3d_ros.sam3d.standin import GroundTruthModel, write_standin_config
from sam3d_ros.sam3d.worker import ModelHost, is_loopback, load_factory, main, result_arrays, spawn_worker
from sam3d_ros.tools.synthetic import NoiseModel, random_tabletop_scene

STANDIN = "sam3d_ros.sam3d.standin:GroundTruthModel"
GARBAGE = np.random.default_rng(0).bytes(512)


# ------------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def scene():
    return random_tabletop_scene(seed=3, n_objects=4)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("sam3d")


def write_config(path, scene, **options):
    objects = [(o.object_id, o.T_cam_obj, o.mesh_model.vertices, o.mesh_model.faces) for o in scene.objects]
    return write_standin_config(path, objects, labels=scene.labels, intrinsics=scene.intrinsics, **options)


class Workers:
    """Starts workers and ends every one of them at teardown."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(self, config, inference=STANDIN, extra=("--preload",)):
        log = open(self.log_dir / f"worker_{len(self.processes)}.log", "w")
        process, endpoint = spawn_worker(config, inference, extra_args=tuple(extra), stderr=log)
        log.close()
        self.processes.append(process)
        return process, endpoint

    def stop_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()


@pytest.fixture(scope="module")
def workers(workdir):
    pool = Workers(workdir)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def exact_worker(workers, workdir, scene):
    config = write_config(workdir / "exact.json", scene, verify_pointmap_m=0.002)
    return workers.start(config)[1]


@pytest.fixture
def backends():
    made = []

    def make(**options):
        backend = Sam3dBackend(**options)
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            backend.close()


def ground_truth(obj):
    """(T_cam_obj of the stand-in's object frame, mesh vertices in it): model frame moved to its box centre."""
    centre = obj.mesh_model.bounds.mean(axis=0)
    return obj.T_cam_obj @ make_transform(np.eye(3), centre), np.asarray(obj.mesh_model.vertices) - centre


def reconstruct_all(backend, scene, depth=True):
    frame = RGBDFrame(scene.rgb, scene.depth_m if depth else None, scene.intrinsics)
    results = []
    for obj in scene.objects:
        mask = scene.mask(obj.object_id)
        context = SceneContext(support_plane_cam=scene.support_plane_cam, others_mask=(scene.labels > 0) & ~mask)
        results.append(backend.reconstruct(frame, mask, context, str(obj.object_id), obj.name))
    return results


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------------------------------
# Geometry through the real worker


def test_exact_pose_and_mesh_through_the_worker(backends, exact_worker, scene):
    backend = backends(worker=exact_worker, timeout_s=20, refine=False)
    for obj, result in zip(scene.objects, reconstruct_all(backend, scene)):
        T_true, v_true = ground_truth(obj)
        assert np.linalg.norm(result.T_cam_obj[:3, 3] - T_true[:3, 3]) < 1e-4, obj.name
        assert rotation_angle_between(result.T_cam_obj[:3, :3], T_true[:3, :3]) < 1e-3, obj.name
        np.testing.assert_allclose(result.mesh_obj.vertices, v_true, atol=1e-4)
        np.testing.assert_allclose(result.size_obj, obj.size_model, atol=1e-4)
        assert result.metric_scale and result.backend == "sam3d" and result.info["pointmap_sent"]
        assert result.info["mesh_source"] == "model" and "no_mesh_reason" not in result.info
        assert result.mesh_obj.visual.vertex_colors.shape == (len(v_true), 4)
        assert result.info["timings_ms"]["overhead_ms"] > 0


def test_without_depth_the_result_says_it_is_not_metric(backends, exact_worker, scene):
    backend = backends(worker=exact_worker, timeout_s=20)
    result = reconstruct_all(backend, scene, depth=False)[0]
    assert result.metric_scale is False and "scale_note" in result.info
    assert not result.info["pointmap_sent"] and not result.info["refined"]
    T_true, _ = ground_truth(scene.objects[0])
    assert np.linalg.norm(result.T_cam_obj[:3, 3] - T_true[:3, 3]) < 1e-4  # the stand-in's own guess, untouched


def test_refinement_brings_a_perturbed_model_within_a_centimetre(backends, workers, workdir):
    """Stand-in scale off by +-30 % and centre by 3 cm; noisy RealSense-like depth on two rendered scenes."""
    for seed in (11, 12):
        noisy = random_tabletop_scene(seed=seed, n_objects=3, noise=NoiseModel())
        config = write_config(workdir / f"perturbed_{seed}.json", noisy,
                              perturb={"scale": 0.3, "translation_m": 0.03, "seed": seed})
        process, endpoint = workers.start(config)
        raw = reconstruct_all(backends(worker=endpoint, timeout_s=20, refine=False), noisy)
        refined = reconstruct_all(backends(worker=endpoint, timeout_s=20), noisy)
        process.terminate()
        for obj, before, after in zip(noisy.objects, raw, refined):
            centre_true = obj.center_cam
            assert np.linalg.norm(before.T_cam_obj[:3, 3] - centre_true) > 0.025  # the perturbation is real
            assert abs(before.info["model_scale"] / obj.size_model.max() - 1) == pytest.approx(0.3, abs=1e-5)
            error = np.linalg.norm(after.T_cam_obj[:3, 3] - centre_true)
            assert error < 0.01, f"{obj.name}: centre error {error * 100:.2f} cm after refinement"
            assert after.info["refined"] and after.metric_scale
            np.testing.assert_allclose(after.size_obj, obj.size_model, rtol=0.05)


def test_stage1_only_gives_the_pose_and_a_voxel_hull(backends, exact_worker, scene):
    backend = backends(worker=exact_worker, timeout_s=20, refine=False, stage1_only=True)
    result = reconstruct_all(backend, scene)[1]
    obj = scene.objects[1]
    T_true, _ = ground_truth(obj)
    assert result.info["mesh_from_voxels"] and result.info["mesh_source"] == "voxel_hull"
    assert result.info["no_mesh_reason"] == "stage1_only: the model gave the pose and coarse voxels only"
    assert np.linalg.norm(result.T_cam_obj[:3, 3] - T_true[:3, 3]) < 1e-4
    cell = obj.size_model.max() / 64
    np.testing.assert_allclose(result.size_obj, obj.size_model, atol=2 * cell)
    assert result.mesh_obj.is_watertight


def test_speed_options_reach_the_model_only_when_it_accepts_them(backends, exact_worker, scene, workdir):
    backend = backends(worker=exact_worker, timeout_s=20, refine=False, seed=7, stage1_inference_steps=5,
                       stage2_inference_steps=3, use_stage2_distillation=True)
    result = reconstruct_all(backend, scene)[0]
    assert result.info["dropped_options"] == ["stage2_inference_steps", "use_stage2_distillation"]
    # In-process: what the model received.
    config = write_config(workdir / "inproc.json", scene)
    host = ModelHost(load_factory(STANDIN), str(config), defaults={"stage1_only": False}, seed=None)
    mask = scene.mask(scene.objects[0].object_id)
    request = wire.WireMessage("reconstruct", "r1", {"seed": 7, "options": {"stage1_inference_steps": 5}},
                               {"image": scene.rgb, "mask": mask})
    reply = host.handle(wire.encode(request))
    assert reply.type == "result" and reply.meta["dropped_options"] == []
    assert host.model.calls[-1] == {"seed": 7, "stage1_only": False, "stage1_inference_steps": 5, "pointmap": False}
    bad = wire.WireMessage("reconstruct", "r2", {"options": {"stage1_inference_steps": 0}},
                           {"image": scene.rgb, "mask": mask})
    assert host.handle(wire.encode(bad)).meta["code"] == "bad_request"
    unknown = wire.WireMessage("reconstruct", "r3", {"options": {"rm_rf": True}}, {"image": scene.rgb, "mask": mask})
    assert "unknown option" in host.handle(wire.encode(unknown)).meta["message"]


def test_the_pipeline_runs_with_the_sam3d_backend(backends, exact_worker, scene):
    from sam3d_ros.reconstruction.pipeline import PerceptionPipeline
    from sam3d_ros.reconstruction.segmentation import labels_to_prompts

    pipeline = PerceptionPipeline(backends(worker=exact_worker, timeout_s=20))
    result = pipeline.process(RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics), labels_to_prompts(scene.labels))
    assert not result.errors and len(result.objects) == len(scene.objects)
    for obj in scene.objects:
        found = next(r for r in result.objects if r.object_id == str(obj.object_id))
        assert np.linalg.norm(found.position_cam - obj.center_cam) < 0.005 and found.metric_scale
    no_depth = pipeline.process(RGBDFrame(scene.rgb, None, scene.intrinsics), labels_to_prompts(scene.labels))
    assert len(no_depth.objects) == len(scene.objects) and not any(r.metric_scale for r in no_depth.objects)


def test_two_workers_share_the_requests(backends, workers, workdir, exact_worker, scene):
    config = write_config(workdir / "second.json", scene)
    _, second = workers.start(config)
    backend = backends(worker=f"{exact_worker},{second}", timeout_s=20, refine=False)
    used = {r.info["worker"] for r in reconstruct_all(backend, scene)}
    assert used == {exact_worker, second}


# ------------------------------------------------------------------------------------------------------------------
# Faults: the caller gets a one-line ReconstructionError within its timeout and goes on


def test_worker_never_started(backends, scene):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    backend = backends(worker=endpoint, timeout_s=5, connect_timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(ReconstructionError, match="no sam3d worker reachable") as info:
        reconstruct_all(backend, scene)
    assert time.monotonic() - start < 0.5 + 2.0  # the connect timeout, far below the 5 s request timeout (room for CI load)
    assert "\n" not in str(info.value)


def test_worker_killed_mid_request_then_the_other_worker_serves(backends, workers, workdir, exact_worker, scene):
    slow = write_config(workdir / "slow.json", scene, delay_s=3.0)
    victim, victim_endpoint = workers.start(slow)
    backend = backends(worker=victim_endpoint, timeout_s=10, retries=0)
    killer = threading.Timer(0.5, victim.kill)
    killer.start()
    start = time.monotonic()
    try:
        with pytest.raises(ReconstructionError, match="dropped the connection"):
            reconstruct_all(backend, scene)
    finally:
        killer.cancel()
    assert time.monotonic() - start < 0.5 + 4.0  # the drop is seen by the socket monitor, not the 10 s timeout
    # A pool with the dead worker first: requests go to the live one.
    pool = backends(worker=f"{victim_endpoint},{exact_worker}", timeout_s=10, connect_timeout_s=0.5)
    results = reconstruct_all(pool, scene)
    assert {r.info["worker"] for r in results} == {exact_worker}


def test_timeout_resets_the_socket_and_the_next_request_works(backends, workers, workdir, scene):
    slow = write_config(workdir / "slow2.json", scene, delay_s=1.0)
    _, endpoint = workers.start(slow)
    backend = backends(worker=endpoint, timeout_s=0.4, refine=False)
    frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics)
    mask = scene.mask(scene.objects[0].object_id)
    backend.client.ping(timeout_s=10)
    stale_link = backend.client._links[endpoint]
    start = time.monotonic()
    with pytest.raises(ReconstructionError, match="did not answer within 0.4 s"):
        backend.reconstruct(frame, mask, SceneContext())
    assert time.monotonic() - start < 0.4 + 2.0  # room for CI load; a lost request would wait forever
    assert endpoint not in backend.client._links  # lazy pirate: that socket (and its late reply) is gone
    assert stale_link.socket.closed
    result = backend.client  # same backend, longer deadline for the next request: the late reply is not mixed in
    reply, _ = result.request(wire.WireMessage("ping", "after-timeout"), timeout_s=10)
    assert reply.type == "pong" and reply.request_id == "after-timeout"
    backend.client.timeout_s = 10
    assert backend.reconstruct(frame, mask, SceneContext()).object_id == ""


def test_close_from_another_thread_abandons_the_request_in_flight(workers, workdir, scene):
    """The node's shutdown closes the backend while the reconstruction thread waits for a 5 s answer: the request
    gives up at once with a one-line error, the thread ends, and the sockets close after it (no crash)."""
    slow = write_config(workdir / "slow_close.json", scene, delay_s=5.0)
    _, endpoint = workers.start(slow)
    backend = Sam3dBackend(worker=endpoint, timeout_s=30.0, refine=False)
    backend.client.ping(timeout_s=10)
    frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics)
    errors = []

    def reconstruct():
        try:
            backend.reconstruct(frame, scene.mask(scene.objects[0].object_id), SceneContext())
        except ReconstructionError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=reconstruct)
    thread.start()
    time.sleep(0.5)  # the request is with the worker (it answers after 5 s)
    started = time.monotonic()
    backend.close()
    thread.join(timeout=5.0)
    assert not thread.is_alive() and time.monotonic() - started < 3.0  # not the worker's 5 s answer
    assert len(errors) == 1 and "closing" in errors[0]
    with pytest.raises(ReconstructionError, match="closed"):
        backend.reconstruct(frame, scene.mask(scene.objects[0].object_id), SceneContext())


def test_garbage_on_the_socket_is_survived(backends, exact_worker, scene):
    host, port = exact_worker.rsplit("/", 1)[1].rsplit(":", 1)
    # 1. Raw TCP garbage at the worker: ZeroMQ drops that connection, the worker goes on.
    with socket.create_connection((host, int(port)), timeout=2) as raw:
        raw.sendall(GARBAGE * 8)
    # 2. Well-framed ZeroMQ garbage: the worker answers with a bad_request error.
    context = zmq.Context()
    try:
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(exact_worker)
        ping_header = wire.encode(wire.WireMessage("ping", "x"))[0]
        for body in ([b"\x00\xff garbage"], [b"", b"\xc1"], [b"", ping_header, b"extra"]):
            dealer.send_multipart(body)
            assert dealer.poll(5000), "the worker did not answer garbage"
            parts = dealer.recv_multipart()
            reply = wire.decode(parts[1:] if parts[0] == b"" else parts)
            assert reply.type == "error" and reply.meta["code"] == "bad_request" and "\n" not in reply.meta["message"]
        dealer.close()
    finally:
        context.term()
    backend = backends(worker=exact_worker, timeout_s=20, refine=False)
    assert len(reconstruct_all(backend, scene)) == len(scene.objects)


def test_garbage_from_a_fake_worker_is_an_error_not_a_hang(backends, scene):
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def fake_worker():
        while not stop.is_set():
            if router.poll(50):
                identity, *_ = router.recv_multipart()
                router.send_multipart([identity, b"", b"\x93not a header", b"\x00" * 10])

    thread = threading.Thread(target=fake_worker, daemon=True)
    thread.start()
    try:
        backend = backends(worker=f"tcp://127.0.0.1:{port}", timeout_s=5)
        start = time.monotonic()
        with pytest.raises(ReconstructionError, match="invalid reply"):
            reconstruct_all(backend, scene)
        assert time.monotonic() - start < 5
    finally:
        stop.set()
        thread.join()
        router.close()
        context.term()
    # A plain TCP server that speaks garbage instead of ZMTP: depending on the bytes the handshake fails (nothing
    # is ever connected) or ZeroMQ's legacy framing turns them into a bogus reply; either way an error, in time.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    serving = threading.Event()

    def babble():
        while not serving.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.sendall(GARBAGE)
                except OSError:
                    pass

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    try:
        backend = backends(worker=f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout_s=3, connect_timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(ReconstructionError) as info:
            reconstruct_all(backend, scene)
        assert time.monotonic() - start < 3 + 0.5
        assert "\n" not in str(info.value)
    finally:
        serving.set()
        thread.join()
        server.close()


def test_empty_image_is_refused_by_client_and_worker(backends, exact_worker, scene):
    empty = RGBDFrame(np.zeros((0, 0, 3), np.uint8), None, scene.intrinsics)
    backend = backends(worker=exact_worker, timeout_s=10)
    with pytest.raises(ReconstructionError, match="not empty"):
        backend.reconstruct(empty, np.zeros((0, 0), bool), SceneContext())
    # The same request sent around the client's check: the worker answers with an error and goes on.
    client = WorkerClient([exact_worker], timeout_s=10)
    try:
        request = wire.WireMessage("reconstruct", "zero", {}, {"image": np.zeros((0, 0, 3), np.uint8),
                                                               "mask": np.zeros((0, 0), bool)})
        reply, _ = client.request(request)
        assert reply.type == "error" and reply.meta["code"] == "bad_request" and "0x0" in reply.meta["message"]
    finally:
        client.close()
    assert len(reconstruct_all(backends(worker=exact_worker, timeout_s=20, refine=False), scene)) == 4


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_encryption_and_client_authentication(backends, workers, workdir, scene, tmp_path):
    import zmq.auth

    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    assert main(["--generate-curve-keys", str(keys)]) == 0
    _, intruder_secret = zmq.auth.create_certificates(str(tmp_path), "intruder")
    (allowed / "client.key").write_text((keys / "client.key").read_text())
    config = write_config(workdir / "curve.json", scene)
    _, endpoint = workers.start(config, extra=("--preload", "--curve-secret-key", str(keys / "server.key_secret"),
                                               "--curve-authorized-keys", str(allowed)))
    good = backends(worker=endpoint, timeout_s=20, refine=False, curve_server_key=str(keys / "server.key"),
                    curve_client_key=str(keys / "client.key_secret"))
    assert len(reconstruct_all(good, scene)) == 4
    for options in ({}, {"curve_server_key": str(keys / "server.key"), "curve_client_key": intruder_secret}):
        stranger = backends(worker=endpoint, timeout_s=5, connect_timeout_s=0.5, **options)
        start = time.monotonic()
        with pytest.raises(ReconstructionError, match="no sam3d worker reachable.*handshake failed"):
            reconstruct_all(stranger, scene)
        assert time.monotonic() - start < 0.5 + 2.0  # the connect timeout, not the 5 s request timeout


# ------------------------------------------------------------------------------------------------------------------
# Worker start-up, model loading and bad model output (in-process where no socket is needed)


def test_binding_beyond_loopback_needs_allow_remote(tmp_path):
    assert is_loopback("tcp://127.0.0.1:5555") and is_loopback("tcp://[::1]:5555") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://0.0.0.0:5555") and not is_loopback("tcp://*:5555") and not is_loopback("tcp://eth0:1")
    command = [sys.executable, "-m", "sam3d_ros.sam3d.worker", "--sam3d-config", str(tmp_path / "x.json"),
               "--inference", STANDIN, "--bind", f"tcp://0.0.0.0:{free_port()}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    assert done.returncode == 2 and "--allow-remote" in done.stderr


def test_missing_official_checkout_is_a_clear_error_reply(workers, tmp_path, scene, monkeypatch):
    monkeypatch.delenv("SAM3D_REPO", raising=False)
    host = ModelHost(load_factory(None, repo=None), str(tmp_path / "pipeline.yaml"))
    request = wire.WireMessage("reconstruct", "r", {}, {"image": scene.rgb, "mask": scene.labels > 0})
    reply = host.handle(wire.encode(request))
    assert reply.meta["code"] == "model_unavailable" and "SAM3D_REPO" in reply.meta["message"]
    host = ModelHost(load_factory(None, repo=str(tmp_path)), str(tmp_path / "pipeline.yaml"))
    (tmp_path / "pipeline.yaml").write_text("x")
    assert "notebook/inference.py not found" in host.handle(wire.encode(request)).meta["message"]
    # The real process answers the same way instead of dying.
    env_free = workers.start(tmp_path / "pipeline.yaml", inference=None, extra=("--sam3d-repo", str(tmp_path)))
    client = WorkerClient([env_free[1]], timeout_s=10)
    try:
        reply, _ = client.request(request)
        assert reply.meta["code"] == "model_unavailable"
        assert client.ping()[0]["load_error"]
    finally:
        client.close()


FAKE_CHECKOUT = """
import numpy as np


class _Pipeline:
    def __init__(self):
        self.calls = []

    def run(self, image, mask=None, seed=None, stage1_only=False, with_mesh_postprocess=True,
            with_texture_baking=True, with_layout_postprocess=False, use_vertex_color=False,
            stage1_inference_steps=None, pointmap=None):
        self.calls.append({"alpha": int((image[..., 3] == 255).sum()), "mask": mask, "seed": seed,
                           "stage1_inference_steps": stage1_inference_steps, "vertex_colour": use_vertex_color})
        return {"rotation": np.array([[1.0, 0, 0, 0]]), "translation": np.array([[0, 0, 1.0]]),
                "scale": np.full((1, 3), 0.1), "voxel": np.zeros((8, 3))}


class Inference:
    def __init__(self, config_file, compile=False):
        self.config_file, self.compile, self._pipeline = config_file, compile, _Pipeline()

    def __call__(self, image, mask, seed=None, pointmap=None):
        rgba = np.concatenate([image, mask[..., None].astype(np.uint8) * 255], axis=-1)
        return self._pipeline.run(rgba, None, seed, pointmap=pointmap)
"""


def test_official_factories_import_the_checkout_by_path(tmp_path, scene, monkeypatch):
    (tmp_path / "notebook").mkdir()
    (tmp_path / "notebook" / "inference.py").write_text(FAKE_CHECKOUT)
    config = tmp_path / "pipeline.yaml"
    config.write_text("fake")
    mask = scene.mask(scene.objects[0].object_id)
    request = wire.encode(wire.WireMessage("reconstruct", "r", {"seed": 5, "options": {
        "stage1_inference_steps": 3, "stage2_inference_steps": 4}}, {"image": scene.rgb, "mask": mask}))
    # Default: the official wrapper, which takes only seed and pointmap.
    host = ModelHost(load_factory(None, repo=str(tmp_path), compile=True), str(config))
    reply = host.handle(request)
    assert reply.type == "result", reply.meta
    assert reply.meta["dropped_options"] == ["stage1_inference_steps", "stage2_inference_steps"]
    assert host.model._inference.compile and host.model._inference.config_file == str(config)
    assert host.model._inference._pipeline.calls[-1]["seed"] == 5
    # Opt-in: the pipeline's run itself, options filtered by its signature.
    monkeypatch.setenv("SAM3D_REPO", str(tmp_path))
    host = ModelHost(load_factory("sam3d_ros.sam3d.worker:OfficialPipeline"), str(config))
    reply = host.handle(request)
    assert reply.type == "result" and reply.meta["dropped_options"] == []
    call = host.model._inference._pipeline.calls[-1]
    assert call == {"alpha": int(mask.sum()), "mask": None, "seed": 5, "stage1_inference_steps": 3,
                    "vertex_colour": True}


def test_model_exceptions_and_bad_outputs_become_error_replies(scene, tmp_path):
    calls = {"n": 0}

    def flaky_factory(config_path):
        def model(image, mask, seed=None, pointmap=None):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("CUDA out of memory")
            if calls["n"] == 2:
                return {"rotation": [1, 0, 0, 0], "translation": [0, 0, 1]}
            if calls["n"] == 3:
                return {"rotation": [1, 0, 0, 0], "translation": [0, 0, 1], "scale": [1, 2, 3], "glb": object()}
            return {"rotation": np.array([[1.0, 0, 0, 0]]), "translation": np.array([[0.0, 0, 1]]),
                    "scale": np.full((1, 3), 0.2), "voxel": np.zeros((10, 3))}

        return model

    host = ModelHost(flaky_factory, "unused")
    request = wire.encode(wire.WireMessage("reconstruct", "r", {}, {"image": scene.rgb, "mask": scene.labels > 0}))
    codes = [host.handle(request).meta.get("code") for _ in range(4)]
    assert codes == ["inference_failed", "bad_output", "bad_output", None]
    expired = wire.WireMessage("reconstruct", "old", {"sent_unix_s": time.time() - 100, "timeout_s": 10},
                               {"image": scene.rgb, "mask": scene.labels > 0})
    assert host.handle(wire.encode(expired)).meta["code"] == "expired"


def test_stand_in_output_follows_the_official_contract(scene, tmp_path):
    config = write_config(tmp_path / "c.json", scene, verify_pointmap_m=0.002)
    model = GroundTruthModel(str(config))
    obj = scene.objects[2]
    mask = scene.mask(obj.object_id)
    output = model(scene.rgb, mask)
    assert tuple(output["rotation"].shape) == (1, 4) and tuple(output["scale"].shape) == (1, 3)
    v_glb = np.asarray(output["glb"].vertices)
    assert np.abs(v_glb).max() <= 0.5 + 1e-6  # unit cube
    pose = model_pose_from_arrays(result_arrays(output))
    T_true, v_true = ground_truth(obj)
    np.testing.assert_allclose(pose.T_cam_obj, T_true, atol=1e-6)
    np.testing.assert_allclose(pose.vertices_obj, v_true, atol=1e-6)
    # A point map with X and Y not negated (the most reported mistake) is caught by the stand-in.
    from sam3d_ros.sam3d.frames import pointmap_p3d_from_depth

    good = pointmap_p3d_from_depth(scene.depth_m, scene.intrinsics)
    model(scene.rgb, mask, pointmap=good)
    with pytest.raises(ValueError, match="off the true surface"):
        model(scene.rgb, mask, pointmap=good * np.array([-1, -1, 1], np.float32))


def test_node_parameters_map_to_backend_options():
    from sam3d_ros.reconstruction.backends.sam3d import PARAMETERS, options_from_parameters

    defaults = {name: default for name, (default, _) in PARAMETERS.items()}
    assert options_from_parameters(defaults) == {"worker": "tcp://127.0.0.1:5555", "timeout_s": 120.0,
                                                 "connect_timeout_s": 2.0, "refine": True}
    options = options_from_parameters(dict(defaults, sam3d_worker="tcp://a:1,tcp://b:2", sam3d_seed=4,
                                           sam3d_stage1_steps=10, sam3d_stage1_only=True))
    assert options["worker"] == "tcp://a:1,tcp://b:2" and options["seed"] == 4
    assert options["stage1_inference_steps"] == 10 and options["stage1_only"] is True
    backend = Sam3dBackend(**options)
    try:
        assert backend.client.endpoints == ["tcp://a:1", "tcp://b:2"]
        assert backend.options == {"stage1_inference_steps": 10, "stage1_only": True}
    finally:
        backend.close()
    with pytest.raises(ValueError):
        Sam3dBackend(stage1_inference_steps=0)


def test_the_client_never_imports_torch():
    code = ("import sys; import sam3d_ros.reconstruction.backends.sam3d, sam3d_ros.sam3d.wire, sam3d_ros.reconstruction.refine, sam3d_ros.sam3d.frames; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
