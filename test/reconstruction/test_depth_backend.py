"""The built-in RGB-D backend on rendered YCB scenes with ground truth, and its footprint fits."""
import numpy as np
import pytest

from sam3d_ros.geometry.footprint import arc_span_rad, fit_circle, fit_footprint
from sam3d_ros.geometry.types import InputError, RGBDFrame, SceneContext
from sam3d_ros.reconstruction.backends.base import ReconstructionError
from sam3d_ros.reconstruction.backends.factory import create_backend
from sam3d_ros.reconstruction.pipeline import PerceptionPipeline
from sam3d_ros.reconstruction.segmentation import labels_to_prompts
from sam3d_ros.tools.synthetic import random_tabletop_scene


@pytest.fixture(scope="module")
def reconstructed():
    """Eight noise-free scenes, 3 objects each, 0.5-1.0 m."""
    pipeline = PerceptionPipeline(create_backend("depth"))
    pairs = []
    for seed in range(100, 108):
        scene = random_tabletop_scene(seed, n_objects=3, distance_range=(0.5, 1.0))
        result = pipeline.process(RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics), labels_to_prompts(scene.labels))
        assert result.errors == []
        by_id = {o.object_id: o for o in result.objects}
        pairs += [(scene, truth, by_id[str(truth.object_id)]) for truth in scene.objects]
    return pairs


def test_centres_match_ground_truth(reconstructed):
    errors = np.array([np.linalg.norm(obj.position_cam - truth.center_cam) for _, truth, obj in reconstructed])
    assert np.median(errors) < 0.01, f"median centre error {np.median(errors) * 100:.2f} cm"
    assert np.percentile(errors, 90) < 0.025, f"p90 centre error {np.percentile(errors, 90) * 100:.2f} cm"


def test_heights_and_footprints_are_metric(reconstructed):
    for _, truth, obj in reconstructed:
        if truth.visible_fraction > 0.95:  # an occluded top cannot be measured
            assert obj.size_obj[2] == pytest.approx(truth.size_model[2], abs=0.01), truth.name
        assert obj.size_obj[0] >= obj.size_obj[1] > 0.02
        assert obj.size_obj[0] <= np.linalg.norm(truth.size_model[:2]) + 0.01, truth.name


def test_meshes_are_watertight_coloured_and_in_the_object_frame(reconstructed):
    for _, truth, obj in reconstructed:
        mesh = obj.mesh_obj
        assert mesh.is_watertight and mesh.volume > 0, truth.name
        assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
        np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0.0, atol=2e-3)  # origin at the box centre
        np.testing.assert_allclose(mesh.extents, obj.size_obj, atol=2e-3)


def test_object_frame_convention(reconstructed):
    for scene, truth, obj in reconstructed:
        R = obj.T_cam_obj[:3, :3]
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(R[:, 2], scene.support_plane_cam[:3], atol=0.02)  # z up = table normal
        assert R[0, 0] >= 0  # x points to the image's right half


def test_same_input_gives_the_same_frame():
    scene = random_tabletop_scene(5, n_objects=2)
    pipeline = PerceptionPipeline(create_backend("depth"))
    frame = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics)
    first = pipeline.process(frame, labels_to_prompts(scene.labels)).objects
    second = pipeline.process(frame, labels_to_prompts(scene.labels)).objects
    for a, b in zip(first, second):
        np.testing.assert_allclose(a.T_cam_obj, b.T_cam_obj, atol=1e-12)


def test_bad_inputs_give_clear_errors():
    scene = random_tabletop_scene(3, n_objects=1)
    backend = create_backend("depth")
    pipeline = PerceptionPipeline(backend)
    prompts = labels_to_prompts(scene.labels)
    with pytest.raises(InputError, match="no valid pixel"):
        pipeline.process(RGBDFrame(scene.rgb, np.full_like(scene.depth_m, np.nan), scene.intrinsics), prompts)
    with pytest.raises(InputError, match="no depth image"):
        pipeline.process(RGBDFrame(scene.rgb, None, scene.intrinsics), prompts)
    with pytest.raises(InputError, match="depth image is 320x240 but colour image is 640x480"):
        pipeline.process(RGBDFrame(scene.rgb, scene.depth_m[::2, ::2], scene.intrinsics), prompts)
    tiny = np.zeros(scene.labels.shape, bool)
    tiny[0, 0] = True
    result = pipeline.process(RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics), prompts + [type(prompts[0])("9", mask=tiny)])
    assert len(result.objects) == 1 and result.errors == ["object 9: mask has 1 pixels (< 50)"]
    hole = scene.labels > 0
    depth = scene.depth_m.copy()
    depth[hole] = np.nan
    with pytest.raises(ReconstructionError, match="valid depth"):
        backend.reconstruct(RGBDFrame(scene.rgb, depth, scene.intrinsics), hole, SceneContext())
    with pytest.raises(ValueError, match="unknown backend 'nerf'"):
        create_backend("nerf")


def test_circle_fit_is_exact_on_an_arc():
    angles = np.linspace(np.pi * 0.6, np.pi * 1.4, 50)
    arc = np.column_stack([0.8 + 0.04 * np.cos(angles), 0.1 + 0.04 * np.sin(angles)])
    centre, radius, rms = fit_circle(arc)
    np.testing.assert_allclose(centre, [0.8, 0.1], atol=1e-9)
    assert radius == pytest.approx(0.04) and rms < 1e-9
    assert arc_span_rad(arc, centre) == pytest.approx(0.8 * np.pi, rel=1e-6)
    fit = fit_footprint(arc, arc)
    assert fit.model == "circle"


def test_box_seen_at_an_angle_and_head_on():
    # The two faces a camera at the origin sees of a 0.10 x 0.06 box turned 45 degrees, centre (0.8, 0): an L.
    R = np.array([[np.cos(np.pi / 4), -np.sin(np.pi / 4)], [np.sin(np.pi / 4), np.cos(np.pi / 4)]])
    t = np.linspace(-0.5, 0.5, 40)
    face1 = np.column_stack([t * 0.10, np.full_like(t, 0.03)])
    face2 = np.column_stack([np.full_like(t, -0.05), t * 0.06])
    outline = np.vstack([face1, face2]) @ R.T + [0.8, 0.0]
    fit = fit_footprint(outline, outline)
    assert fit.model == "rectangle"
    np.testing.assert_allclose(fit.centre_ab, [0.8, 0.0], atol=2e-3)
    # One face head-on: no depth information; the mirror rule keeps the centre on the viewing ray.
    face = np.column_stack([np.full(40, 0.8), np.linspace(-0.05, 0.05, 40)])
    fit = fit_footprint(face, face)
    assert fit.model == "mirror" and abs(fit.centre_ab[1]) < 1e-9


def test_noisy_depth_and_masks_spilling_onto_the_table():
    """RealSense-like noise and masks dilated by 5 px onto the table and background: centres stay put."""
    import cv2

    from sam3d_ros.tools.synthetic import NoiseModel
    from sam3d_ros.geometry.types import ObjectPrompt

    pipeline = PerceptionPipeline(create_backend("depth"))
    errors = []
    for seed in range(200, 206):
        scene = random_tabletop_scene(seed, n_objects=3, noise=NoiseModel())
        kernel = np.ones((11, 11), np.uint8)
        prompts = []
        for obj in scene.objects:
            spilled = cv2.dilate((scene.labels == obj.object_id).astype(np.uint8), kernel).astype(bool)
            prompts.append(ObjectPrompt(str(obj.object_id), mask=spilled & np.isin(scene.labels, [0, obj.object_id])))
        result = pipeline.process(RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics), prompts)
        assert result.errors == []
        by_id = {o.object_id: o for o in result.objects}
        for obj in scene.objects:
            reconstruction = by_id[str(obj.object_id)]
            assert reconstruction.mesh_obj.is_watertight
            errors.append(np.linalg.norm(reconstruction.position_cam - obj.center_cam))
    assert np.median(errors) < 0.01 and np.percentile(errors, 90) < 0.025, np.round(np.array(errors) * 100, 2)


def test_occluded_silhouette_edges_and_the_lost_rim():
    """A flat object at 1.0 m between a farther object (left) and a nearer occluder (right), its silhouette rim
    without depth (edge dropout): only the edge against the nearer occluder is occluded, and the rim comes back."""
    from sam3d_ros.reconstruction.backends.depth import DepthBackend
    from sam3d_ros.tools.synthetic import default_intrinsics

    intrinsics = default_intrinsics(160, 120)
    depth = np.full((120, 160), 2.0, np.float32)
    mask, farther, nearer = (np.zeros((120, 160), bool) for _ in range(3))
    mask[40:80, 60:100], farther[40:80, 40:60], nearer[40:80, 100:120] = True, True, True
    depth[mask], depth[farther], depth[nearer] = 1.0, 1.5, 0.8
    frame = RGBDFrame(np.zeros((120, 160, 3), np.uint8), depth, intrinsics)
    backend = DepthBackend()
    pixels = np.argwhere(mask)
    points, _ = intrinsics.backproject(depth, mask)
    scale = backend._scale(points)
    occluded = backend._occluded_edge(frame, farther | nearer, pixels, points, scale)
    assert occluded[pixels[:, 1] == 99].all() and not occluded[pixels[:, 1] <= 95].any()
    assert not backend._occluded_edge(frame, None, pixels, points, scale).any()
    # Drop the outer two pixels of depth: the filled rim reaches the mask's edge again, on the object's plane.
    inner = pixels[(pixels[:, 0] >= 42) & (pixels[:, 0] < 78) & (pixels[:, 1] >= 62) & (pixels[:, 1] < 98)]
    inner_points = points[np.isin(pixels[:, 0] * 1000 + pixels[:, 1], inner[:, 0] * 1000 + inner[:, 1])]
    normals = np.tile([0.0, 0.0, -1.0], (len(inner_points), 1))
    filled, _, filled_normals, filled_pixels = backend._fill_silhouette(
        frame, mask, inner, inner_points, np.zeros((len(inner_points), 3), np.uint8), normals, np.array([0.0, -1.0, 0.0])
    )
    assert len(filled) == len(filled_pixels) > len(inner_points)
    assert filled_pixels[:, 1].min() == 60 and filled_pixels[:, 1].max() == 99
    np.testing.assert_allclose(filled[:, 2], 1.0, atol=1e-9)
    assert np.isnan(filled_normals[len(inner_points):]).all()


def test_the_filled_rim_does_not_raise_the_top():
    """A wall leaning back (a bowl's far inner wall, seen from above) whose rim lost its depth: its tangent plane goes
    on up and back past the rim, but no filled point rises above the highest seen point; sideways the rim is still
    filled out to the mask's edge."""
    from sam3d_ros.reconstruction.backends.depth import DepthBackend
    from sam3d_ros.tools.synthetic import default_intrinsics

    intrinsics = default_intrinsics(160, 120)
    rows, cols = np.mgrid[0:120, 0:160]
    ray_y = (rows - intrinsics.cy) / intrinsics.fy
    depth = (1.0 / (1.0 + 1.5 * ray_y)).astype(np.float32)  # z = 1 - 1.5 y: higher up (y < 0) is farther back
    mask = np.zeros((120, 160), bool)
    mask[40:80, 60:100] = True
    frame = RGBDFrame(np.zeros((120, 160, 3), np.uint8), depth, intrinsics)
    kept = np.zeros_like(mask)
    kept[45:78, 62:98] = True  # the top rim (rows 40-44) and the sides lost their depth
    inner = np.argwhere(kept)
    points, _ = intrinsics.backproject(depth, kept)
    normal = np.array([0.0, -1.5, -1.0]) / np.sqrt(3.25)  # toward the camera and up
    up_cam = np.array([0.0, -1.0, 0.0])
    filled, _, _, filled_pixels = DepthBackend()._fill_silhouette(
        frame, mask, inner, points, np.zeros((len(points), 3), np.uint8), np.tile(normal, (len(points), 1)), up_cam
    )
    assert (filled @ up_cam).max() <= (points @ up_cam).max() + 1e-9
    assert filled_pixels[:, 1].min() == 60 and filled_pixels[:, 1].max() == 99  # sideways the rim came back
    assert filled_pixels[:, 0].max() == 79


def test_the_image_border_is_an_occluding_edge():
    """A flat object at 1.0 m whose mask runs into the image's right border, nothing else in view: the points within
    a few pixels of the border are at an occluded edge (the object goes on outside the frame), the others are not."""
    from sam3d_ros.reconstruction.backends.depth import DepthBackend
    from sam3d_ros.tools.synthetic import default_intrinsics

    intrinsics = default_intrinsics(160, 120)
    depth = np.full((120, 160), 2.0, np.float32)
    mask = np.zeros((120, 160), bool)
    mask[40:80, 100:160] = True
    depth[mask] = 1.0
    frame = RGBDFrame(np.zeros((120, 160, 3), np.uint8), depth, intrinsics)
    backend = DepthBackend()
    pixels = np.argwhere(mask)
    points, _ = intrinsics.backproject(depth, mask)
    occluded = backend._occluded_edge(frame, None, pixels, points, backend._scale(points))
    assert occluded[pixels[:, 1] >= 159 - backend.rim_px].all() and not occluded[pixels[:, 1] < 156].any()


@pytest.mark.parametrize("side", ["left", "right"])
def test_an_object_cut_by_the_image_border_keeps_its_size_and_centre(side):
    """A rendered potted-meat can (a rounded box, 10 x 6 x 8 cm) with 30 % of its mask's width outside the image:
    its completion goes on past the border (a superquadric, open across the border's edge), so its footprint and
    centre are the object's, within a few per cent of its size; fully in view, no point is at the border and it
    reconstructs as well."""
    from sam3d_ros.reconstruction.backends.depth import DepthBackend
    from sam3d_ros.tools.evaluation import true_centre_in_axes
    from sam3d_ros.tools.synthetic import (border_cut_scene, default_intrinsics, look_at_camera, render_scene,
                                           upright_pose)

    name = "010_potted_meat_can"
    scene = render_scene([(name, upright_pose(name, 0.0, 0.0, np.radians(20)))], look_at_camera(0.6, 40, 0),
                         default_intrinsics())
    truth = scene.objects[0]
    true_sides = np.sort(truth.size_model[:2])[::-1]
    pipeline = PerceptionPipeline(DepthBackend())
    for view in (scene, border_cut_scene(scene, truth.object_id, 0.3, side)):
        mask = view.mask(truth.object_id)
        touches = mask[:, 0].any() or mask[:, -1].any()
        assert touches == (view is not scene)
        result = pipeline.process(RGBDFrame(view.rgb, view.depth_m, view.intrinsics), labels_to_prompts(view.labels))
        obj = result.objects[0]
        centre_error = np.linalg.norm(obj.T_cam_obj[:3, 3] - true_centre_in_axes(truth, obj.T_cam_obj))
        assert centre_error < 0.04 * true_sides[0], f"{side}: centre {centre_error * 100:.2f} cm off"
        np.testing.assert_allclose(obj.size_obj[:2], true_sides, rtol=0.15, err_msg=side)
        assert obj.mesh_obj.is_watertight


def test_objects_over_a_metre_get_a_mesh_not_a_subdivision_error():
    """Depth 5x too large (a 16-bit PNG at 5000 units per metre read as millimetres, undetectable when the scene
    stays inside the working range) makes a cracker box a metre tall; it still gets its (scaled) mesh."""
    scene = random_tabletop_scene(31, n_objects=3, distance_range=(0.5, 0.9),
                                  names=["002_master_chef_can", "003_cracker_box", "004_sugar_box", "005_tomato_soup_can",
                                         "010_potted_meat_can"])
    frame = RGBDFrame(scene.rgb, scene.depth_m * 5, scene.intrinsics)
    result = PerceptionPipeline(create_backend("depth")).process(frame, labels_to_prompts(scene.labels))
    assert result.errors == [] and len(result.objects) == 3
    assert max(o.size_obj.max() for o in result.objects) > 1.0
    assert all(o.mesh_obj.is_watertight for o in result.objects)


def test_the_solid_of_revolution_takes_in_a_seen_handle():
    """A mug body (4 cm radius) seen from the camera's side with a 2 cm handle on its right: the candidate's axis
    stays on the body, and its box (x along the handle) and centre take the handle in."""
    from sam3d_ros.reconstruction.backends.depth import DepthBackend, _PlaneBasis

    rng = np.random.default_rng(0)
    angle, z = rng.uniform(np.pi / 2, 3 * np.pi / 2, 4000), rng.uniform(0.0, 0.09, 4000)
    body_ab = np.column_stack([0.5 + 0.04 * np.cos(angle), 0.1 + 0.04 * np.sin(angle)])
    t = rng.uniform(0.0, np.pi, 400)
    handle_ab = np.column_stack([0.5 + rng.uniform(-0.005, 0.005, 400), 0.14 + 0.02 * np.sin(t)])
    points_ab = np.vstack([body_ab, handle_ab])
    heights = np.r_[z, 0.045 + 0.025 * np.cos(t)]
    basis = _PlaneBasis(np.array([0.0, -1.0, 0.0]), 0.3, np.array([0.0, 0.0, 1.0]))
    backend = DepthBackend()
    shape, T_cam_obj, size_obj, mesh = backend._revolution(basis, points_ab, heights, 0.09,
                                                          backend._scale(basis.from_ab(points_ab, heights)))
    assert shape == "revolution with handle"
    np.testing.assert_allclose(size_obj, [0.10, 0.08, 0.09], atol=0.004)
    np.testing.assert_allclose(basis.to_ab(T_cam_obj[:3, 3][None])[0], [0.5, 0.11], atol=0.003)
    assert abs(T_cam_obj[:3, 0] @ basis.lateral) > 0.99 and T_cam_obj[0, 0] >= 0  # x along the handle, to the right
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.bounds[1, :2], -mesh.bounds[0, :2], atol=1e-9)  # the origin is the box centre


def _spatula_scene(azimuth_deg: float):
    """A spatula 1.5 times YCB's (a shape outside YCB), lying flat, 0.9 m away at 25 degrees; at azimuth 0 its handle
    recedes from the camera and its thin neck, lower than the table clearance, splits what the camera sees of it
    into the head and the handle's far end."""
    from sam3d_ros.tools.synthetic import NoiseModel, default_intrinsics, look_at_camera, render_scene, upright_pose

    name = "033_spatula@1.47x1.49x1.12"
    return render_scene([(name, upright_pose(name, 0.0, 0.0, 0.0))], look_at_camera(0.9, 25, azimuth_deg),
                        default_intrinsics(), noise=NoiseModel(), rng=3)


def _centre_error_m(scene, obj) -> float:
    from sam3d_ros.tools.evaluation import true_centre_in_axes

    return float(np.linalg.norm(obj.T_cam_obj[:3, 3] - true_centre_in_axes(scene.objects[0], obj.T_cam_obj)))


def test_a_part_the_visible_surface_does_not_join_is_kept():
    from sam3d_ros.reconstruction.backends.depth import DepthBackend

    scene = _spatula_scene(0.0)
    frame, prompts = RGBDFrame(scene.rgb, scene.depth_m, scene.intrinsics), labels_to_prompts(scene.labels)
    errors = {}
    for label, min_part_fraction in (("largest cluster only", np.inf), ("parts", 0.02)):
        obj = PerceptionPipeline(DepthBackend(min_part_fraction=min_part_fraction)).process(frame, prompts).objects[0]
        errors[label] = _centre_error_m(scene, obj)
    assert errors["parts"] < 0.015, errors  # the spatula is 45 cm long
    assert errors["largest cluster only"] > 0.05, errors  # the handle's far end was dropped: the head alone


def test_clusters_behind_the_object_are_dropped_and_its_separate_parts_kept():
    from sam3d_ros.reconstruction.backends.depth import DepthBackend

    rng = np.random.default_rng(0)

    def patch(centre, n, size=0.1):  # a surface patch facing the camera, points on a 2 mm grid with 1 mm noise
        xy = rng.uniform(-size / 2, size / 2, (n, 2))
        return np.column_stack([xy, np.zeros(n)]) + centre + rng.normal(0, 0.001, (n, 3))

    body = patch([0.0, 0.0, 0.70], 1000, 0.12)
    handle_end = patch([0.0, 0.04, 0.85], 80, 0.04)  # 15 cm behind the body, across a gap in what was seen
    wall = patch([0.0, -0.08, 1.40], 200, 0.12)  # background the mask spilled onto, 70 cm behind
    points = np.vstack([body, handle_end, wall])
    backend = DepthBackend()
    kept = backend._remove_outliers(points, backend._scale(points), focal_px=600.0)
    source = np.repeat([0, 1, 2], [len(body), len(handle_end), len(wall)])[kept]
    assert np.mean(source == 1) > 0.05 and (source == 1).sum() > 0.9 * len(handle_end)  # the part is kept
    assert not np.any(source == 2)  # the wall is not
    assert (source == 0).sum() > 0.95 * len(body)
