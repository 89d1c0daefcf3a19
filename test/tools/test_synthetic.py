"""Tests of the synthetic YCB tabletop renderer: its ground truth must be exact and reproducible."""
from __future__ import annotations


import numpy as np
import open3d as o3d
import pytest
from scipy.spatial import ConvexHull, cKDTree

from sam3d_ros.tools.synthetic import (
    BACKGROUND_RGB,
    BORDER_SIDES,
    DEFAULT_OBJECT_NAMES,
    NoiseModel,
    SyntheticObject,
    SyntheticScene,
    border_cut_scene,
    default_intrinsics,
    load_ycb_mesh,
    look_at_camera,
    moving_object_sequence,
    random_tabletop_scene,
    render_scene,
    upright_pose,
)
from sam3d_ros.geometry.transforms import invert_transform, transform_points

RANDOM_SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def fixed_placements() -> list[tuple[str, np.ndarray]]:
    """Three well separated upright objects around the world origin."""
    return [
        ("003_cracker_box", upright_pose("003_cracker_box", 0.0, 0.0, 0.4)),
        ("006_mustard_bottle", upright_pose("006_mustard_bottle", 0.05, 0.22, -1.0)),
        ("025_mug", upright_pose("025_mug", -0.05, -0.2, 2.0)),
    ]


@pytest.fixture(scope="module")
def fixed_camera() -> np.ndarray:
    return look_at_camera(0.9, 35.0, 10.0)


@pytest.fixture(scope="module")
def fixed_scene(fixed_placements, fixed_camera) -> SyntheticScene:
    return render_scene(fixed_placements, fixed_camera, default_intrinsics())


@pytest.fixture(scope="module")
def random_scenes() -> dict[int, SyntheticScene]:
    return {seed: random_tabletop_scene(seed, n_objects=5) for seed in RANDOM_SEEDS}


def _posed_mesh_scene(obj: SyntheticObject) -> o3d.t.geometry.RaycastingScene:
    """Distance queries against the object's mesh posed in the camera frame."""
    vertices_cam = transform_points(obj.T_cam_obj, obj.mesh_model.vertices)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices_cam.astype(np.float32)), o3d.core.Tensor(obj.mesh_model.faces.astype(np.uint32))
    )
    return scene


def _depth_steps(depth_m: np.ndarray, threshold_m: float) -> np.ndarray:
    """Pixels with depth whose 4-neighbour is more than threshold_m nearer or farther."""
    padded = np.pad(depth_m.astype(np.float64), 1, constant_values=np.nan)
    neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth_m) & (np.abs(neighbours - depth_m) > threshold_m).any(axis=0)


def _polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex polygons (ordered (N, 2) corners)."""
    for polygon in (a, b):
        edges = np.roll(polygon, -1, axis=0) - polygon
        for axis in np.stack([-edges[:, 1], edges[:, 0]], axis=1):
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


# ------------------------------------------------------------------------------------------------ camera


def test_default_intrinsics_match_a_d435_and_scale():
    intrinsics = default_intrinsics()
    assert (intrinsics.width, intrinsics.height) == (640, 480)
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (615.0, 615.0, 319.5, 239.5)
    small = default_intrinsics(320, 240)
    assert (small.fx, small.fy, small.cx, small.cy) == (307.5, 307.5, 159.5, 119.5)


@pytest.mark.parametrize("elevation_deg", [20.0, 45.0, 90.0])
def test_look_at_camera_sees_the_target_at_the_image_centre_upright(elevation_deg):
    target_world = np.array([0.1, -0.05, 0.0])
    T_cam_world = look_at_camera(0.8, elevation_deg, 30.0, target_world)
    R = T_cam_world[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    position_world = invert_transform(T_cam_world)[:3, 3]
    assert np.linalg.norm(position_world - target_world) == pytest.approx(0.8)
    assert position_world[2] == pytest.approx(0.8 * np.sin(np.radians(elevation_deg)))
    intrinsics = default_intrinsics()
    target_cam = transform_points(T_cam_world, target_world)
    np.testing.assert_allclose(target_cam[0], [0.0, 0.0, 0.8], atol=1e-12)
    if elevation_deg < 90.0:  # world up is image up, without roll
        above_uv = intrinsics.project(transform_points(T_cam_world, target_world + [0.0, 0.0, 0.1]))[0]
        assert above_uv[1] < intrinsics.cy - 10
        assert above_uv[0] == pytest.approx(intrinsics.cx, abs=1e-6)


# ------------------------------------------------------------------------------------------------ ground truth


def test_table_depth_lies_on_the_support_plane(fixed_scene):
    plane = fixed_scene.support_plane_cam
    assert np.linalg.norm(plane[:3]) == pytest.approx(1.0)
    assert plane[3] > 0  # the camera (origin) is on the side the normal points to
    table = (fixed_scene.labels == 0) & np.isfinite(fixed_scene.depth_m)
    assert table.sum() > 50_000
    points_cam, _ = fixed_scene.intrinsics.backproject(fixed_scene.depth_m, table)
    assert np.abs(points_cam @ plane[:3] + plane[3]).max() < 1e-4
    points_world = transform_points(invert_transform(fixed_scene.T_cam_world), points_cam)
    assert np.abs(points_world[:, 2]).max() < 1e-4
    assert np.abs(points_world[:, :2]).max() <= 0.75 + 1e-3  # inside the 1.5 m table
    # Beyond the table nothing is hit: no depth, label 0, background colour.
    beyond = ~np.isfinite(fixed_scene.depth_m)
    assert beyond.sum() > 1000
    assert (fixed_scene.labels[beyond] == 0).all()
    assert (fixed_scene.rgb[beyond] == BACKGROUND_RGB).all()


def test_support_plane_normal_points_to_a_camera_below_the_table_too(fixed_placements):
    T_cam_world = look_at_camera(0.8, -30.0, 0.0)  # looking up at the table's underside
    scene = render_scene(fixed_placements[:1], T_cam_world, default_intrinsics(320, 240))
    plane = scene.support_plane_cam
    assert plane[3] > 0
    np.testing.assert_allclose(plane[:3], T_cam_world[:3, :3] @ [0.0, 0.0, -1.0], atol=1e-12)
    table = (scene.labels == 0) & np.isfinite(scene.depth_m)
    points_cam, _ = scene.intrinsics.backproject(scene.depth_m, table)
    assert len(points_cam) > 1000
    assert np.abs(points_cam @ plane[:3] + plane[3]).max() < 1e-4


def test_object_depth_lies_on_the_posed_mesh(fixed_scene):
    for obj in fixed_scene.objects:
        points_cam, _ = fixed_scene.intrinsics.backproject(fixed_scene.depth_m, fixed_scene.labels == obj.object_id)
        assert len(points_cam) > 1000
        distance = _posed_mesh_scene(obj).compute_distance(o3d.core.Tensor(points_cam.astype(np.float32))).numpy()
        assert distance.max() < 1e-3, obj.name
        assert np.median(distance) < 1e-4, obj.name


def test_object_depth_lies_on_the_mesh_in_random_scenes(random_scenes):
    scene = random_scenes[RANDOM_SEEDS[0]]
    for obj in scene.objects:
        points_cam, _ = scene.intrinsics.backproject(scene.depth_m, scene.labels == obj.object_id)
        distance = _posed_mesh_scene(obj).compute_distance(o3d.core.Tensor(points_cam.astype(np.float32))).numpy()
        assert distance.max() < 1e-3, obj.name


def test_labels_and_objects_match_the_placements(fixed_scene, fixed_placements, fixed_camera):
    labels = fixed_scene.labels
    assert labels.dtype == np.uint16 and labels.shape == (480, 640)
    assert fixed_scene.depth_m.dtype == np.float32 and fixed_scene.depth_m.shape == (480, 640)
    assert fixed_scene.rgb.dtype == np.uint8 and fixed_scene.rgb.shape == (480, 640, 3)
    assert [obj.object_id for obj in fixed_scene.objects] == [1, 2, 3]
    assert [obj.name for obj in fixed_scene.objects] == [name for name, _ in fixed_placements]
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert np.isfinite(fixed_scene.depth_m[labels > 0]).all()
    np.testing.assert_array_equal(fixed_scene.T_cam_world, fixed_camera)
    for obj, (_, T_world_obj) in zip(fixed_scene.objects, fixed_placements):
        np.testing.assert_allclose(obj.T_cam_obj, fixed_camera @ T_world_obj, atol=1e-12)
        assert obj.visible_fraction == pytest.approx(1.0)  # the three are apart


def test_center_and_size_describe_the_model_box(fixed_scene, random_scenes):
    scenes = [fixed_scene] + list(random_scenes.values())
    for scene in scenes:
        for obj in scene.objects:
            bounds = load_ycb_mesh(obj.name).bounds
            np.testing.assert_allclose(obj.size_model, bounds[1] - bounds[0], atol=1e-12)
            np.testing.assert_allclose(obj.center_cam, transform_points(obj.T_cam_obj, bounds.mean(axis=0))[0])
            u, v = scene.intrinsics.project(obj.center_cam)[0]
            rows, cols = np.nonzero(scene.labels == obj.object_id)
            assert cols.min() - 10 <= u <= cols.max() + 10, obj.name
            assert rows.min() - 10 <= v <= rows.max() + 10, obj.name


def test_random_objects_stand_upright_apart_and_inside_the_image(random_scenes):
    for seed, scene in random_scenes.items():
        assert len(scene.objects) == 5
        assert len({obj.name for obj in scene.objects}) == 5  # distinct while the pool allows
        assert set(obj.name for obj in scene.objects) <= set(DEFAULT_OBJECT_NAMES)
        T_world_cam = invert_transform(scene.T_cam_world)
        footprints = []
        for obj in scene.objects:
            T_world_obj = T_world_cam @ obj.T_cam_obj
            np.testing.assert_allclose(T_world_obj[:3, 2], [0.0, 0.0, 1.0], atol=1e-9)
            vertices_world = transform_points(T_world_obj, obj.mesh_model.vertices)
            assert vertices_world[:, 2].min() == pytest.approx(0.0, abs=1e-9)
            xy = vertices_world[:, :2]
            footprints.append(xy[ConvexHull(xy).vertices])
            mask = scene.labels == obj.object_id
            rows, cols = np.nonzero(mask)
            assert rows.min() >= 2 and cols.min() >= 2, (seed, obj.name)
            assert rows.max() <= scene.intrinsics.height - 3 and cols.max() <= scene.intrinsics.width - 3
        for i in range(len(footprints)):
            for j in range(i + 1, len(footprints)):
                assert not _polygons_overlap(footprints[i], footprints[j]), (seed, i, j)


def test_random_scenes_respect_the_occlusion_bound(random_scenes):
    for seed, scene in random_scenes.items():
        for obj in scene.objects:
            visible = int((scene.labels == obj.object_id).sum())
            assert visible >= 400, (seed, obj.name)
            assert 0.6 <= obj.visible_fraction <= 1.0, (seed, obj.name)
    strict = random_tabletop_scene(11, n_objects=4, max_occlusion=0.05)
    assert min(obj.visible_fraction for obj in strict.objects) >= 0.95


def test_visible_fraction_is_visible_over_alone_pixels(fixed_camera):
    intrinsics = default_intrinsics()
    T_world_cam = invert_transform(fixed_camera)
    # A mustard bottle, and a bleach bottle 25 cm behind it on the same viewing ray.
    toward_camera = T_world_cam[:2, 3] / np.linalg.norm(T_world_cam[:2, 3])
    front_xy = 0.1 * toward_camera
    back_xy = front_xy - 0.25 * toward_camera
    placements = [
        ("006_mustard_bottle", upright_pose("006_mustard_bottle", *front_xy, 0.0)),
        ("021_bleach_cleanser", upright_pose("021_bleach_cleanser", *back_xy, 0.5)),
    ]
    scene = render_scene(placements, fixed_camera, intrinsics)
    alone = render_scene(placements[1:], fixed_camera, intrinsics)
    visible_back = int((scene.labels == 2).sum())
    alone_back = int((alone.labels == 1).sum())
    front, back = scene.objects
    assert front.visible_fraction == pytest.approx(1.0)
    assert back.visible_fraction == pytest.approx(visible_back / alone_back)
    assert 0.0 < back.visible_fraction < 0.8
    assert alone.objects[0].visible_fraction == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ reproducibility


def test_same_seed_gives_identical_scenes():
    for noise in (None, NoiseModel()):
        a = random_tabletop_scene(5, n_objects=4, noise=noise)
        b = random_tabletop_scene(5, n_objects=4, noise=noise)
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.depth_m, b.depth_m)  # NaNs in the same places compare equal
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.T_cam_world, b.T_cam_world)
        assert [o.name for o in a.objects] == [o.name for o in b.objects]
        for oa, ob in zip(a.objects, b.objects):
            np.testing.assert_array_equal(oa.T_cam_obj, ob.T_cam_obj)
            assert oa.visible_fraction == ob.visible_fraction


def test_different_seeds_give_different_scenes(random_scenes):
    a, b = random_scenes[RANDOM_SEEDS[0]], random_scenes[RANDOM_SEEDS[1]]
    assert not np.array_equal(a.T_cam_world, b.T_cam_world)
    assert not np.array_equal(a.depth_m, b.depth_m, equal_nan=True)
    assert not np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.rgb, b.rgb)


def test_noisy_render_is_reproducible_from_its_rng(fixed_placements, fixed_camera):
    intrinsics = default_intrinsics(320, 240)
    a = render_scene(fixed_placements, fixed_camera, intrinsics, noise=NoiseModel())
    b = render_scene(fixed_placements, fixed_camera, intrinsics, noise=NoiseModel())  # rng None means seed 0
    c = render_scene(fixed_placements, fixed_camera, intrinsics, noise=NoiseModel(), rng=1)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.depth_m, c.depth_m, equal_nan=True)


# ------------------------------------------------------------------------------------------------ noise


def test_noise_model_sigma_grows_with_depth_squared():
    noise = NoiseModel()
    assert noise.sigma_m(0.0) == pytest.approx(0.001)
    assert noise.sigma_m(1.0) == pytest.approx(0.0035)
    assert noise.sigma_m(2.0) == pytest.approx(0.011)


def test_noise_changes_depth_but_never_fills_missing_pixels(fixed_placements, fixed_camera):
    noise = NoiseModel()
    intrinsics = default_intrinsics()
    clean = render_scene(fixed_placements, fixed_camera, intrinsics)
    noisy = render_scene(fixed_placements, fixed_camera, intrinsics, noise=noise, rng=3)
    np.testing.assert_array_equal(noisy.labels, clean.labels)
    assert noisy.depth_m.dtype == np.float32
    clean_valid, noisy_valid = np.isfinite(clean.depth_m), np.isfinite(noisy.depth_m)
    assert not (noisy_valid & ~clean_valid).any()  # no depth appears where there was none
    assert (clean_valid & ~noisy_valid).sum() > 1000  # dropout and missing pixels
    assert (noisy.depth_m[noisy_valid] > 0).all()
    both = clean_valid & noisy_valid
    assert np.mean(noisy.depth_m[both] != clean.depth_m[both]) > 0.5
    assert not np.array_equal(noisy.rgb, clean.rgb)

    # Away from edges the error is Gaussian with the model's sigma plus 1 mm quantisation.
    steps = _depth_steps(clean.depth_m, noise.edge_threshold_m)
    near_edge = np.zeros_like(steps)
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            near_edge |= np.roll(np.roll(steps | ~clean_valid | (clean.labels > 0), dr, axis=0), dc, axis=1)
    interior = clean_valid & ~near_edge
    assert interior.sum() > 50_000
    missing_rate = 1.0 - noisy_valid[interior].mean()
    assert noise.missing_prob / 2 < missing_rate < noise.missing_prob * 2
    z = clean.depth_m[interior & noisy_valid].astype(np.float64)
    residual = noisy.depth_m[interior & noisy_valid] - z
    expected = np.sqrt(noise.sigma_m(z) ** 2 + noise.depth_quantization_m**2 / 12)
    assert np.std(residual / expected) == pytest.approx(1.0, abs=0.1)
    assert abs(np.mean(residual)) < 2e-4

    # At depth steps: many pixels drop out, and some fly between foreground and background.
    assert steps.sum() > 500
    assert 0.2 < (~noisy_valid[steps]).mean() < 0.6
    flying = steps & noisy_valid & (np.abs(noisy.depth_m - clean.depth_m) > 0.02)
    assert flying.sum() > 20


def test_noise_model_with_everything_off_is_the_identity(fixed_placements, fixed_camera):
    off = NoiseModel(
        sigma_base_m=0.0, sigma_quadratic_per_m=0.0, flying_pixel_prob=0.0, edge_dropout_prob=0.0,
        missing_prob=0.0, depth_quantization_m=0.0, rgb_std=0.0,
    )  # fmt: skip
    intrinsics = default_intrinsics()
    clean = render_scene(fixed_placements, fixed_camera, intrinsics)
    same = render_scene(fixed_placements, fixed_camera, intrinsics, noise=off)
    np.testing.assert_array_equal(same.depth_m, clean.depth_m)
    np.testing.assert_array_equal(same.rgb, clean.rgb)


# ------------------------------------------------------------------------------------------------ appearance, API


def test_objects_have_distinct_textured_colours(fixed_scene):
    rgb = fixed_scene.rgb.astype(np.float64)
    means = {}
    for obj in fixed_scene.objects:
        pixels = rgb[fixed_scene.labels == obj.object_id]
        assert pixels.std(axis=0).max() > 8.0, obj.name  # texture and shading vary over the surface
        means[obj.name] = pixels.mean(axis=0)
    r, g, b = means["006_mustard_bottle"]
    assert r > b + 60 and g > b + 60  # yellow
    r, g, b = means["003_cracker_box"]
    assert r > g + 40 and r > b + 40  # red
    table = rgb[(fixed_scene.labels == 0) & np.isfinite(fixed_scene.depth_m)]
    r, g, b = table.mean(axis=0)
    assert r > g > b  # wood
    assert table.std(axis=0).max() > 3.0


def test_smaller_images_and_other_object_names():
    intrinsics = default_intrinsics(320, 240)
    scene = random_tabletop_scene(2, n_objects=2, intrinsics=intrinsics, names=["077_rubiks_cube", "036_wood_block"])
    assert scene.rgb.shape == (240, 320, 3) and scene.depth_m.shape == (240, 320)
    assert sorted(obj.name for obj in scene.objects) == ["036_wood_block", "077_rubiks_cube"]
    assert set(np.unique(scene.labels)) == {0, 1, 2}


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown YCB object"):
        load_ycb_mesh("999_no_such_object")
    with pytest.raises(ValueError, match="unknown YCB object"):
        random_tabletop_scene(0, n_objects=1, names=["999_no_such_object"])
    with pytest.raises(ValueError, match="max_occlusion"):
        random_tabletop_scene(0, max_occlusion=1.5)
    with pytest.raises(ValueError, match="4x4"):
        render_scene([("025_mug", np.eye(3))], look_at_camera(0.8, 40, 0), default_intrinsics())


def test_cached_meshes_cannot_be_corrupted(fixed_scene):
    obj = fixed_scene.objects[0]
    before = load_ycb_mesh(obj.name).vertices.copy()
    with pytest.raises(ValueError):
        obj.mesh_model.vertices[0, 0] += 1.0
    obj.mesh_model.copy().apply_translation([1.0, 0.0, 0.0])
    np.testing.assert_array_equal(load_ycb_mesh(obj.name).vertices, before)


# ------------------------------------------------------------------------------------------------ grid layout

GRID_NAMES = ("003_cracker_box", "006_mustard_bottle", "025_mug", "019_pitcher_base", "035_power_drill",
              "022_windex_bottle", "024_bowl", "007_tuna_fish_can", "077_rubiks_cube", "036_wood_block")


def test_grid_layout_places_every_object_visible_apart_and_keeps_them_so_while_they_move():
    frames = moving_object_sequence(GRID_NAMES, n_frames=3, seed=4, noise=None, layout="grid")
    for scene in frames:
        assert [obj.name for obj in scene.objects] == list(GRID_NAMES)  # ids in the order of the names
        T_world_cam = invert_transform(scene.T_cam_world)
        footprints = []
        for obj in scene.objects:
            assert int((scene.labels == obj.object_id).sum()) >= 400, obj.name
            assert obj.visible_fraction >= 0.6, obj.name
            T_world_obj = T_world_cam @ obj.T_cam_obj
            np.testing.assert_allclose(T_world_obj[:3, 2], [0.0, 0.0, 1.0], atol=1e-9)
            xy = transform_points(T_world_obj, obj.mesh_model.vertices)[:, :2]
            footprints.append(xy[ConvexHull(xy).vertices])
            rows, cols = np.nonzero(scene.labels == obj.object_id)
            assert rows.min() >= 2 and cols.min() >= 2 and rows.max() <= 477 and cols.max() <= 637, obj.name
        for i in range(len(footprints)):
            for j in range(i + 1, len(footprints)):
                assert not _polygons_overlap(footprints[i], footprints[j]), (i, j)
    np.testing.assert_array_equal(frames[0].T_cam_world, frames[-1].T_cam_world)  # a fixed camera
    assert any(not np.allclose(a.T_cam_obj, b.T_cam_obj) for a, b in zip(frames[0].objects, frames[-1].objects))


def test_random_layout_is_still_the_default_and_layouts_are_checked():
    default = moving_object_sequence(GRID_NAMES[:2], n_frames=1, seed=4, noise=None)
    random = moving_object_sequence(GRID_NAMES[:2], n_frames=1, seed=4, noise=None, layout="random")
    np.testing.assert_array_equal(default[0].depth_m, random[0].depth_m)
    with pytest.raises(ValueError, match="layout must be 'random' or 'grid'"):
        moving_object_sequence(GRID_NAMES[:2], n_frames=1, seed=4, layout="spiral")


@pytest.mark.parametrize("side", BORDER_SIDES)
def test_border_cut_scene_is_the_same_camera_with_the_object_cut(fixed_scene, side):
    """The crop cuts 30 % of the object's mask box off that side and keeps the optical frame: every kept pixel
    back-projects to the same 3D point as in the whole frame (principal point shifted by the crop's corner)."""
    obj = fixed_scene.objects[0]
    cut = border_cut_scene(fixed_scene, obj.object_id, 0.3, side)
    mask, whole = cut.mask(obj.object_id), fixed_scene.mask(obj.object_id)
    edge = {"left": mask[:, 0], "right": mask[:, -1], "top": mask[0], "bottom": mask[-1]}[side]
    assert edge.any() and 0.5 * whole.sum() < mask.sum() < 0.85 * whole.sum()
    points_cut, _ = cut.intrinsics.backproject(cut.depth_m, mask)
    points_whole, _ = fixed_scene.intrinsics.backproject(fixed_scene.depth_m, whole)
    assert len(points_cut) < len(points_whole)
    assert cKDTree(points_whole).query(points_cut)[0].max() < 1e-9
    assert cut.objects == fixed_scene.objects and cut.labels.shape == (cut.intrinsics.height, cut.intrinsics.width)
