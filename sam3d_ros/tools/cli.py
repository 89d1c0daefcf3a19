"""`sam3d-ros`: the command line. `reconstruct` runs the node's pipeline on files, `replay` the node on a rosbag2;
`eval`, `eval-tracking`, `eval-grasps`, `eval-fusion`, `bench` and `bench-node` measure it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sam3d_ros.geometry.grasps import GraspPlanner
from sam3d_ros.geometry.gripper import GripperParams
from sam3d_ros.geometry.depth_range import DEFAULT_DEPTH_RANGE_M, check_depth_range, depth_range
from sam3d_ros.geometry.types import InputError, RGBDFrame
from sam3d_ros.reconstruction import files
from sam3d_ros.reconstruction.backends.factory import create_backend
from sam3d_ros.reconstruction.box_segmenter import create_box_segmenter
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline
from sam3d_ros.reconstruction.segmentation import labels_to_prompts

EXIT_BAD_INPUT = 2  # no object written: the frame or the command line is unusable, or every object failed
EXIT_PARTIAL = 3  # objects.json holds every object that succeeded; each one that did not is named on stderr
DEFAULT_TRACKING_OBJECTS = ("003_cracker_box", "004_sugar_box", "005_tomato_soup_can", "006_mustard_bottle",
                            "010_potted_meat_can", "021_bleach_cleanser", "025_mug")


def _fail(message: str) -> int:
    print(f"sam3d-ros: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _check_depth_units(depth_m: np.ndarray, args: argparse.Namespace) -> None:
    """The node's plausibility check of the depth unit, with the hints of this command's options."""
    try:
        range_m = depth_range(args.depth_range)
    except ValueError as exc:
        raise InputError(f"--depth-range: {exc}") from exc
    if Path(args.depth).suffix.lower() == ".npy":
        far = f"a .npy depth must be float metres; is {args.depth} in millimetres?"
        near = f"a .npy depth must be float metres; is {args.depth} in another unit?"
    else:
        far = (f"16-bit PNG value x --depth-scale {args.depth_scale:g} = metres; set --depth-scale to the PNG's metres "
               "per unit (e.g. 0.0002 for 5000 units per metre)")
        near = (f"16-bit PNG value x --depth-scale {args.depth_scale:g} = metres; is the PNG in metres (--depth-scale 1) "
                "or a label image?")
    check_depth_range(depth_m, range_m, "--depth-range", far, near)


def reconstruct(args: argparse.Namespace) -> int:
    """Reconstruct every object of one RGB-D frame and write objects.json + meshes to --out."""
    try:
        rgb = files.read_rgb(args.rgb)
        depth_m = files.read_depth(args.depth, args.depth_scale)
        intrinsics = files.read_camera_yaml(args.camera_info)
        RGBDFrame(rgb, depth_m, intrinsics, args.frame_id).validate()  # sizes and valid pixels before the units
        _check_depth_units(depth_m, args)
        if args.masks is not None:
            labels = files.read_labels(args.masks)
            if labels.shape != rgb.shape[:2]:
                raise InputError(f"label image is {labels.shape[1]}x{labels.shape[0]} but the colour image is {rgb.shape[1]}x{rgb.shape[0]}")
            prompts = labels_to_prompts(labels)
            if not prompts:
                raise InputError(f"label image {args.masks} has no object pixel (all 0)")
        else:
            prompts = files.read_detections(args.detections)
            if not prompts:
                raise InputError(f"detections {args.detections} is an empty list: no object to reconstruct")
        problems = []
        if args.ids:
            known = {p.object_id for p in prompts}
            problems += [f"object {i}: unknown id (present: {', '.join(sorted(known))})" for i in args.ids if i not in known]
            prompts = [p for p in prompts if p.object_id in set(args.ids)]
        try:  # before the work: an unwritable --out must not cost a reconstruction
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot write to --out {args.out}: {exc.strerror or exc}") from exc
        segmenter, segmenter_line = create_box_segmenter(args.models_dir, args.sam_checkpoint, args.box_segmentation)
        if args.detections is not None:
            print(segmenter_line, file=sys.stderr)
        options = {}
        if args.backend == "sam3d":
            options = {"worker": args.sam3d_worker, "timeout_s": args.sam3d_timeout}
            if args.sam3d_curve_server_key:
                options["curve_server_key"] = args.sam3d_curve_server_key
            if args.sam3d_curve_client_key:
                options["curve_client_key"] = args.sam3d_curve_client_key
        planner = None if args.no_grasps else GraspPlanner(
            GripperParams.from_yaml(args.gripper) if args.gripper else GripperParams(), args.max_grasps)
        backend = create_backend(args.backend, **options)
        try:  # a failure of one object costs that object only (the pipeline's rule); anything else is one line
            result = PerceptionPipeline(backend, box_segmenter=segmenter, grasp_planner=planner).process(
                RGBDFrame(rgb, depth_m, intrinsics, args.frame_id), prompts
            )
        finally:
            close = getattr(backend, "close", None)
            if close is not None:
                close()
    except InputError as exc:
        return _fail(str(exc))
    except ValueError as exc:  # unknown backend or box segmentation method, unusable checkpoint
        return _fail(str(exc))
    except Exception as exc:  # a library giving up on the whole frame (no traceback: one line, like bad input)
        return _fail(f"unexpected {type(exc).__name__}: {exc}")
    try:
        path = files.write_results(args.out, args.frame_id, result.objects, glb=not args.no_glb)
    except OSError as exc:
        return _fail(f"cannot write the results to --out {args.out}: {exc.strerror or exc}")
    print(f"wrote {len(result.objects)} object(s) to {path}")
    problems += result.errors
    for problem in problems:
        print(f"sam3d-ros: error: {problem}", file=sys.stderr)
    if not problems:
        return 0
    return EXIT_PARTIAL if result.objects else EXIT_BAD_INPUT


def evaluate(args: argparse.Namespace) -> int:
    """Score a backend and the baseline on seeded rendered YCB scenes of the tuning objects, the held-out objects and
    the earlier releases' scenes; print the report (and write JSON)."""
    import dataclasses
    import json
    import time

    from sam3d_ros.tools.evaluation import (
        REGRESSION, evaluate_box_masks, format_box_mask_report, format_report, format_split_report, run_split_evaluation,
    )

    start = time.perf_counter()
    if args.box_masks:
        print("mask IoU of box segmentation (boxes = true mask box + 4 px, 4 objects per scene)")
        print(format_box_mask_report(evaluate_box_masks(args.box_masks, args.scenes, args.seed, not args.no_noise)))
        print(f"({time.perf_counter() - start:.0f} s)")
        return 0
    parts = list(dict.fromkeys(args.split))
    try:
        scores = run_split_evaluation(
            n_scenes=10 if args.quick else args.scenes, seed=args.seed, noise=not args.no_noise, backend=args.backend,
            parts=parts, baseline_remove_outliers=not args.raw_baseline, border_cut=args.border_cut,
            progress=(lambda line: print(line, file=sys.stderr)) if args.verbose else None,
        )
    except ValueError as exc:
        return _fail(str(exc))
    if args.border_cut:
        print(f"every object on its own crop of the frame: the image border cuts {args.border_cut:g} of its mask's box "
              "off one side (synthetic.border_cut_scene)")
    print(format_report(scores) if parts == [REGRESSION] else format_split_report(scores))
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(s) for s in scores], indent=1, default=float))
    return 0


def bench(args: argparse.Namespace) -> int:
    """Time the first reconstruction of 640x480 frames with 1, 5 and 10 objects; print medians and peak memory."""
    if args.backend == "sam3d":  # the overhead the worker path adds, with a zero-cost stand-in model
        from sam3d_ros.tools.sam3d_bench import format_worker_bench, run_worker_benchmark

        print(format_worker_bench(run_worker_benchmark(n_objects=5, repeats=args.repeats)))
        return 0
    from sam3d_ros.tools.benchmark import format_bench, run_benchmark

    print(format_bench(run_benchmark(tuple(args.objects), args.repeats, args.backend), args.backend))
    return 0


def eval_tracking(args: argparse.Namespace) -> int:
    """Pose tracking accuracy on seeded rendered sequences, with backend and/or exact meshes."""
    from sam3d_ros.tools.synthetic import load_ycb_mesh
    from sam3d_ros.tools.tracking_evaluation import format_tracking_evaluation, run_tracking_evaluation

    try:
        for name in args.objects:
            load_ycb_mesh(name)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    sources = ["backend", "exact"] if args.meshes == "both" else [args.meshes]
    say = (lambda source, r: print(
        f"[eval-tracking] {source} {r.name} seed {r.seed}: max {max(r.centre_error_cm, default=0):.2f} cm, "
        f"{max(r.rotation_error_deg, default=0):.2f} deg", file=sys.stderr)) if args.verbose else None
    try:
        results = run_tracking_evaluation(args.objects, args.seeds, args.frames, sources, args.backend, progress=say)
    except ValueError as exc:
        return _fail(str(exc))
    for source in sources:
        print(format_tracking_evaluation(results[source], source if source == "exact" else f"{args.backend} backend"))
    return 0


def eval_grasps(args: argparse.Namespace) -> int:
    """Grasps planned on reconstructed meshes, executed in MuJoCo on the true YCB meshes; per part and category."""
    import time

    from sam3d_ros.tools.grasp_evaluation import format_grasp_report, run_grasp_evaluation

    try:
        gripper = GripperParams.from_yaml(args.gripper) if args.gripper else GripperParams()
    except InputError as exc:
        return _fail(str(exc))
    start = time.perf_counter()
    say = (lambda line: print(line, file=sys.stderr)) if args.verbose else None
    rows = []
    for part in args.parts:
        rows += run_grasp_evaluation(part, args.scenes, args.seed, args.objects, args.top, gripper, args.backend, say)
    print(f"grasp success in MuJoCo, {args.backend} backend meshes, true YCB meshes in the simulation, "
          f"{args.scenes} scenes per part from seed {args.seed}, {args.objects} objects per scene")
    print(format_grasp_report(rows))
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


def _fusion_config(config_class, settings: list[str]):
    """`--set NAME=VALUE` items as a FusionConfig, each value read as its field's type (true/false for a switch);
    ValueError naming the first setting that is unknown or unreadable."""
    import dataclasses

    kinds = {field.name: type(field.default) for field in dataclasses.fields(config_class)}
    values = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or key not in kinds:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(kinds)}")
        if kinds[key] is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {item!r}: {key} is true or false")
            values[key] = value.lower() in ("true", "1")
        else:
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"--set {item!r}: {key} is a number") from None
            values[key] = int(number) if kinds[key] is int else number
    config = config_class(**values)
    config.validate()
    return config


def eval_fusion(args: argparse.Namespace) -> int:
    """Multi-view fusion on rendered camera sweeps and turntables, tuning and/or held-out objects."""
    from sam3d_ros.reconstruction.fusion import FusionConfig
    from sam3d_ros.tools import object_split
    from sam3d_ros.tools.fusion_evaluation import format_fusion_evaluation, run_fusion_evaluation
    from sam3d_ros.tools.synthetic import load_ycb_mesh

    parts = [object_split.TUNING, object_split.HELD_OUT] if args.part == "both" else [args.part]
    try:
        config = _fusion_config(FusionConfig, args.set)
        chosen = {part: list(args.objects) if args.objects else list(object_split.objects(part, args.categories))
                  for part in parts}
        for names in chosen.values():
            for name in names:
                load_ycb_mesh(name)
    except (TypeError, ValueError, KeyError, FileNotFoundError) as exc:
        return _fail(str(exc))
    say = (lambda r: print(f"[eval-fusion] {r.mode} {r.name}: "
                           + (r.error or " ".join(f"{n}:{s.f1:.2f}" for n, s in r.fused.items())), file=sys.stderr, flush=True)
           ) if args.verbose else None
    for part, names in chosen.items():
        runs = run_fusion_evaluation(names, args.modes, args.views, args.sweep_deg, args.seed, args.backend, config, say)
        print(format_fusion_evaluation(runs, part if not args.objects else "chosen"), flush=True)
    return 0


def bench_node(args: argparse.Namespace) -> int:
    """Latency image -> TF of the running node at a camera rate with tracked objects, drops and memory."""
    from sam3d_ros.tools.node_bench import format_node_bench, run_node_benchmark

    params = dict(item.split("=", 1) for item in args.param)
    result = run_node_benchmark(args.rate, args.objects, args.seconds, log_path=args.log, params=params, layout=args.layout)
    print(format_node_bench(result))
    return 0


def bench_messages(args: argparse.Namespace) -> int:
    """Print what turning a mesh into marker and collision messages costs, the node's way and the plain way."""
    from sam3d_ros.tools.message_bench import format_message_benchmark, run_message_benchmark

    print(format_message_benchmark(*run_message_benchmark(tuple(args.triangles), args.repeats)))
    return 0


def bench_inputs(args: argparse.Namespace) -> int:
    """Print what decoding compressed inputs and undistorting a frame cost."""
    from sam3d_ros.tools.input_bench import format_input_benchmark, run_input_benchmark

    print(format_input_benchmark(run_input_benchmark(args.repeats)))
    return 0


def replay(args: argparse.Namespace) -> int:
    """Run the node on a recorded rosbag2, offline and frame-exact, into an MCAP bag of its outputs."""
    from sam3d_ros.tools.replay import replay_command

    return replay_command(args)


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of all sub-commands."""
    parser = argparse.ArgumentParser(prog="sam3d-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="serve SAM 3D Objects to nodes and CLIs over ZeroMQ (sam3d-ros worker --help)",
                   add_help=False)
    rec = sub.add_parser("reconstruct", help="reconstruct the objects of one RGB-D frame from files")
    rec.add_argument("--rgb", type=Path, required=True, help="8-bit PNG/JPEG colour image")
    rec.add_argument("--depth", type=Path, required=True, help="16-bit PNG (value x --depth-scale = metres) or .npy float32 metres")
    rec.add_argument("--depth-scale", type=float, default=0.001, help="metres per unit of a 16-bit depth PNG (default 0.001)")
    rec.add_argument("--depth-range", type=float, nargs=2, default=list(DEFAULT_DEPTH_RANGE_M), metavar=("MIN", "MAX"),
                     help="working range of the depth camera in metres (default 0.1 10): a median depth outside it is "
                          "refused as a unit error")
    rec.add_argument("--camera-info", type=Path, required=True, help="camera_calibration / camera_info_manager YAML")
    seg = rec.add_mutually_exclusive_group(required=True)
    seg.add_argument("--masks", type=Path, help="8- or 16-bit label PNG, 0 = background, value = object id")
    seg.add_argument("--detections", type=Path, help='JSON list of {"id", "label", "score", "bbox": [x_min, y_min, x_max, y_max]}')
    rec.add_argument("--ids", nargs="+", help="reconstruct only these object ids")
    rec.add_argument("--backend", default="depth", help="reconstruction backend: depth (default) or sam3d")
    rec.add_argument("--box-segmentation", default="auto", choices=["auto", "sam", "u2netp", "depth"],
                     help="masks from --detections boxes (default auto: SAM with a checkpoint, else U^2-Net-p, else depth)")
    rec.add_argument("--sam-checkpoint", default="", help="Segment Anything checkpoint (relative to --models-dir or absolute)")
    rec.add_argument("--models-dir", type=Path, default=Path(__file__).resolve().parents[2] / "models", help="model folder")
    rec.add_argument("--sam3d-worker", nargs="+", default=["tcp://127.0.0.1:5555"],
                     help="ZeroMQ endpoint(s) of SAM 3D workers (--backend sam3d)")
    rec.add_argument("--sam3d-timeout", type=float, default=120.0, help="seconds to wait for one SAM 3D object")
    rec.add_argument("--sam3d-curve-server-key", default="", help="CurveZMQ: the worker's public certificate")
    rec.add_argument("--sam3d-curve-client-key", default="", help="CurveZMQ: this client's secret certificate")
    rec.add_argument("--frame-id", default="camera_color_optical_frame", help="optical frame the poses are in")
    rec.add_argument("--out", type=Path, default=Path("sam3d_out"), help="output folder (default ./sam3d_out)")
    rec.add_argument("--no-glb", action="store_true", help="write PLY meshes only")
    rec.add_argument("--no-grasps", action="store_true", help="do not plan grasps (objects.json without \"grasps\")")
    rec.add_argument("--max-grasps", type=int, default=10, help="grasps per object, best first (default 10)")
    rec.add_argument("--gripper", type=Path, help="gripper YAML (keys: README \"Grasps\"; default Franka Hand)")
    rec.set_defaults(func=reconstruct)
    rp = sub.add_parser("replay", help="run the node on a recorded rosbag2 (sqlite3 or MCAP), every frame, into an MCAP bag")
    rp.add_argument("in_bag", type=Path, metavar="IN_BAG", help="rosbag2 folder (or its .db3 / .mcap file)")
    rp.add_argument("--out", type=Path, required=True, help="output bag folder (new; meshes go to OUT/meshes)")
    for kind, what in (("image", "colour image (Image, or CompressedImage <topic>/compressed)"),
                       ("depth", "registered depth (Image, or CompressedImage <topic>/compressedDepth)"),
                       ("camera-info", "CameraInfo"), ("masks", "label image (Image)"), ("detections", "Detection2DArray")):
        rp.add_argument(f"--{kind}", metavar="TOPIC", help=f"{what} topic (default: found by type and usual names)")
    rp.add_argument("--params-file", type=Path, help="the node's parameters (its YAML, e.g. config/perception.yaml)")
    rp.add_argument("--target-frame", help="output frame through the bag's /tf and /tf_static (the node's target_frame)")
    rp.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a node parameter, after --params-file (repeatable)")
    rp.set_defaults(func=replay)
    ev = sub.add_parser("eval", help="accuracy on seeded rendered YCB scenes against ground truth and a baseline: "
                                     "tuning objects, held-out objects, and the earlier releases' scenes")
    ev.add_argument("--split", nargs="+", choices=["tuning", "stretched", "held-out", "regression"],
                    default=["tuning", "stretched", "held-out", "regression"],
                    help="which parts to run (default all four; develop with 'tuning' and 'stretched' (tuning objects "
                         "stretched into new proportions and sizes) only, report with all)")
    ev.add_argument("--scenes", type=int, default=40, help="scenes per part (default 40)")
    ev.add_argument("--quick", action="store_true", help="10 scenes per part (development)")
    ev.add_argument("--seed", type=int, default=0, help="first scene seed (default 0)")
    ev.add_argument("--backend", default="depth", help="backend to evaluate (default depth)")
    ev.add_argument("--no-noise", action="store_true", help="noise-free depth")
    ev.add_argument("--raw-baseline", action="store_true", help="baseline without statistical outlier removal")
    ev.add_argument("--json", type=Path, help="also write every per-object score to this JSON file")
    ev.add_argument("--box-masks", nargs="+", choices=["depth", "u2netp", "sam"],
                    help="instead: mask IoU of these box segmentation methods")
    ev.add_argument("--border-cut", type=float, default=0.0, metavar="FRACTION",
                    help="score every object on a crop of the frame whose border cuts this fraction of the object's "
                         "mask box off one side (objects cut by the image border; default 0: whole frames)")
    ev.add_argument("--verbose", action="store_true", help="one progress line per scene on stderr")
    ev.set_defaults(func=evaluate)
    et = sub.add_parser("eval-tracking", help="pose tracking accuracy of the node's tracker on seeded rendered sequences")
    et.add_argument("--objects", nargs="+", default=list(DEFAULT_TRACKING_OBJECTS), help="YCB objects (one per sequence)")
    et.add_argument("--seeds", type=int, default=6, help="sequences per object (default 6)")
    et.add_argument("--frames", type=int, default=30, help="frames per sequence (default 30, 1 s at 30 Hz)")
    et.add_argument("--meshes", choices=["backend", "exact", "both"], default="both",
                    help="the backend's reconstruction, the true mesh, or both (default)")
    et.add_argument("--backend", default="depth", help="backend for --meshes backend (default depth)")
    et.add_argument("--verbose", action="store_true", help="one line per sequence on stderr")
    et.set_defaults(func=eval_tracking)
    eg = sub.add_parser("eval-grasps", help="grasp success in MuJoCo on the true YCB meshes, planned on reconstructed ones")
    eg.add_argument("--scenes", type=int, default=12, help="scenes per part (default 12; fewer for a quick look)")
    eg.add_argument("--seed", type=int, default=0, help="first scene seed (default 0)")
    eg.add_argument("--objects", type=int, default=3, help="objects per scene (default 3)")
    eg.add_argument("--top", type=int, default=5, help="grasps simulated per object, best first (default 5)")
    eg.add_argument("--parts", nargs="+", default=["held-out", "tuning"], choices=["held-out", "tuning"],
                    help="parts of the object split (default both; targets are on held-out)")
    eg.add_argument("--backend", default="depth", help="backend whose meshes the grasps are planned on (default depth)")
    eg.add_argument("--gripper", type=Path, help="gripper YAML (default Franka Hand)")
    eg.add_argument("--verbose", action="store_true", help="one line per scene on stderr")
    eg.set_defaults(func=eval_grasps)
    ef = sub.add_parser("eval-fusion", help="multi-view fusion: mesh accuracy after 1-45 views of rendered sequences")
    ef.add_argument("--part", choices=["tuning", "held-out", "both"], default="held-out",
                    help="objects of tools/object_split.py (default held-out)")
    ef.add_argument("--categories", nargs="+", help="only these categories of the split (e.g. boxes bottles)")
    ef.add_argument("--objects", nargs="+", help="these YCB objects instead of a part of the split")
    ef.add_argument("--modes", nargs="+", choices=["sweep", "turntable"], default=["sweep", "turntable"])
    ef.add_argument("--views", type=int, default=45, help="frames per sequence (default 45)")
    ef.add_argument("--sweep-deg", type=float, default=150.0, help="camera sweep / turntable angle (default 150)")
    ef.add_argument("--seed", type=int, default=0, help="seed of the first object's sequences (default 0)")
    ef.add_argument("--backend", default="depth", help="single-view backend (default depth)")
    ef.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a FusionConfig setting (repeatable)")
    ef.add_argument("--verbose", action="store_true", help="one line per sequence on stderr")
    ef.set_defaults(func=eval_fusion)
    be = sub.add_parser("bench", help="time and peak memory of the first reconstruction (640x480)")
    be.add_argument("--objects", type=int, nargs="+", default=[1, 5, 10], help="objects per frame (default 1 5 10)")
    be.add_argument("--repeats", type=int, default=9, help="frames per size (default 9)")
    be.add_argument("--backend", default="depth",
                    help="depth (default), or sam3d: per-object overhead of the worker path with a zero-cost stand-in")
    be.set_defaults(func=bench)
    bn = sub.add_parser("bench-node", help="node latency image publish -> TF receipt with tracked objects, drops, memory")
    bn.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    bn.add_argument("--objects", type=int, default=5, help="tracked objects, 1 to 20 (default 5)")
    bn.add_argument("--layout", choices=["random", "grid"], default=None,
                    help="first frame: random (default up to 5 objects, camera 0.5-1 m out; finds none for 10) or grid "
                         "(default above 5: rows of objects, camera about 1.6 m out for any count)")
    bn.add_argument("--seconds", type=float, default=30.0, help="how long to play (default 30; 600 for the memory check)")
    bn.add_argument("--log", type=Path, default=Path("bench_node.log"), help="the node's log (default ./bench_node.log)")
    bn.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a node parameter (repeatable)")
    bn.set_defaults(func=bench_node)
    bm = sub.add_parser("bench-messages", help="time to build mesh markers and collision meshes, fast path vs plain API")
    bm.add_argument("--triangles", type=int, nargs="+", default=[1000, 5000, 20000], help="mesh sizes (default 1000 5000 20000)")
    bm.add_argument("--repeats", type=int, default=7, help="timed builds per size (default 7)")
    bm.set_defaults(func=bench_messages)
    bi = sub.add_parser("bench-inputs", help="per-frame cost of decoding compressed images and undistorting (640x480)")
    bi.add_argument("--repeats", type=int, default=5, help="timed runs of 20 calls per step, best kept (default 5)")
    bi.set_defaults(func=bench_inputs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sam3d-ros`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:  # the worker has its own parser and runs in the model's environment
        from sam3d_ros.sam3d.worker import main as worker_main

        return worker_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
