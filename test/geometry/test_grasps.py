"""Antipodal grasp planner on known shapes: widths, axes, table, neighbours, gripper limits."""
import numpy as np
import pytest
import trimesh

from sam3d_ros.geometry.gripper import GripperParams
from sam3d_ros.geometry.grasps import GraspPlanner, SceneMeshes, transform_plane
from sam3d_ros.geometry.transforms import make_transform
from sam3d_ros.geometry.types import InputError

UP = np.array([0.0, 0.0, 1.0])


def table_under(mesh: trimesh.Trimesh) -> np.ndarray:
    """Support plane z = min z of the mesh, normal up."""
    return np.array([0.0, 0.0, 1.0, -mesh.bounds[0, 2]])


def check_frames(grasps):
    for g in grasps:
        R = g.T_obj_grasp[:3, :3]
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(np.cross(R[:, 1], R[:, 2]), R[:, 0], atol=1e-9)  # x = y cross z
        assert 0.0 <= g.score <= 1.0
    scores = [g.score for g in grasps]
    assert scores == sorted(scores, reverse=True)


def test_box_grasps_close_across_its_faces_with_the_box_side_as_width():
    box = trimesh.creation.box([0.05, 0.07, 0.12])
    grasps = GraspPlanner(max_grasps=10).plan(box, table_under(box))
    assert len(grasps) == 10
    check_frames(grasps)
    for g in grasps:
        y = g.T_obj_grasp[:3, 1]
        axis = int(np.argmax(np.abs(y)))
        assert abs(y[axis]) > np.cos(np.radians(20)), y  # closing across a pair of opposite faces
        assert axis in (0, 1)  # 0.12 m is wider than the 0.08 m opening
        assert g.width_m == pytest.approx([0.05, 0.07][axis], abs=2e-3)
        assert g.T_obj_grasp[:3, 2] @ UP <= 1e-6  # never from below the table


def test_cylinder_grasps_close_across_the_diameter():
    cylinder = trimesh.creation.cylinder(radius=0.03, height=0.1, sections=48)
    grasps = GraspPlanner().plan(cylinder, table_under(cylinder))
    assert grasps
    check_frames(grasps)
    for g in grasps:
        assert g.width_m == pytest.approx(0.06, abs=2e-3)
        assert abs(g.T_obj_grasp[2, 1]) < np.sin(np.radians(15))  # closing axis horizontal, across the axis
        assert np.linalg.norm(g.T_obj_grasp[:2, 3]) < 0.005  # TCP on the cylinder axis


def test_an_object_wider_than_the_opening_has_no_grasp():
    cube = trimesh.creation.box([0.1, 0.1, 0.1])
    assert GraspPlanner().plan(cube, table_under(cube)) == []
    wide_gripper = GripperParams(max_opening_m=0.12, palm_width_m=0.2)
    assert GraspPlanner(wide_gripper).plan(cube, table_under(cube))  # the same cube fits a wider hand


def test_the_table_blocks_approaches_from_below_and_fingers_under_it():
    plate = trimesh.creation.box([0.2, 0.2, 0.03])  # only its 3 cm thickness fits the jaws
    floating = GraspPlanner().plan(plate, None)
    assert floating, "a floating plate is grasped across its thickness"
    # On the table a finger would have to go under it: nothing is left.
    assert GraspPlanner().plan(plate, table_under(plate)) == []
    box = trimesh.creation.box([0.05, 0.05, 0.05])
    plane = table_under(box)
    grasps = GraspPlanner(max_grasps=50).plan(box, plane)
    assert grasps
    gripper = GripperParams()
    for g in grasps:
        assert g.T_obj_grasp[:3, 2] @ UP <= 1e-6
        # Side approaches hold the fingers above the table: TCP at least half a finger width up.
        if abs(g.T_obj_grasp[:3, 2] @ UP) < 0.1:
            assert g.T_obj_grasp[2, 3] + plane[3] >= gripper.finger_width_m / 2 * 0.9


def test_a_neighbour_object_blocks_the_grasps_on_its_side():
    box = trimesh.creation.box([0.05, 0.05, 0.12])
    plane = table_under(box)
    planner = GraspPlanner(max_grasps=50)
    closing_x = [g for g in planner.plan(box, plane) if abs(g.T_obj_grasp[0, 1]) > 0.9]
    assert closing_x, "alone, the box is grasped across x"
    neighbour = trimesh.creation.box([0.05, 0.2, 0.12])
    T_obj_neighbour = make_transform(np.eye(3), [0.05 + 0.008, 0.0, 0.0])  # 8 mm gap beside the +x face
    grasps = planner.plan_scene([box, neighbour], [np.eye(4), T_obj_neighbour], plane)[0]
    assert grasps, "the box is still grasped across y"
    assert not [g for g in grasps if abs(g.T_obj_grasp[0, 1]) > 0.9]  # no finger fits into the 8 mm gap


def test_plan_scene_returns_grasps_in_each_object_frame():
    box = trimesh.creation.box([0.04, 0.06, 0.1])
    T_cam_obj = make_transform(trimesh.transformations.rotation_matrix(0.7, [0, 0, 1])[:3, :3], [0.3, -0.1, 0.8])
    plane_obj = table_under(box)
    plane_cam = transform_plane(T_cam_obj, plane_obj)
    in_scene = GraspPlanner().plan_scene([box], [T_cam_obj], plane_cam)[0]
    alone = GraspPlanner().plan(box, plane_obj)
    assert len(in_scene) == len(alone)
    for a, b in zip(in_scene, alone):
        np.testing.assert_allclose(a.T_obj_grasp, b.T_obj_grasp, atol=1e-9)


def test_gripper_parameters_from_yaml(tmp_path):
    path = tmp_path / "robotiq.yaml"
    path.write_text("max_opening_m: 0.085\nfinger_length_m: 0.04\n")
    params = GripperParams.from_yaml(path)
    assert params.max_opening_m == 0.085 and params.pad_width_m == GripperParams().pad_width_m
    path.write_text("max_openin_m: 0.085\n")
    with pytest.raises(InputError, match="unknown key.*max_openin_m"):
        GripperParams.from_yaml(path)
    path.write_text("max_opening_m: -1\n")
    with pytest.raises(InputError, match="max_opening_m must be a positive number"):
        GripperParams.from_yaml(path)
    with pytest.raises(InputError, match="not found"):
        GripperParams.from_yaml(tmp_path / "missing.yaml")


def test_a_thin_bar_lying_flat_is_taken_near_the_fingertips_with_the_fingers_above_the_table():
    bar = trimesh.creation.box([0.15, 0.025, 0.012])  # a 1.2 cm thick handle lying on the table
    plane = table_under(bar)
    gripper = GripperParams()
    grasps = GraspPlanner(gripper).plan(bar, plane)
    assert grasps, "a lying handle narrower than the opening is graspable from above"
    check_frames(grasps)
    for g in grasps:
        z = g.T_obj_grasp[:3, 2]
        tip_height = (g.T_obj_grasp[:3, 3] + gripper.pad_length_m / 2 * z) @ UP + plane[3]
        assert tip_height >= 0.003 - 1e-9  # TABLE_MARGIN_M
    top_down = [g for g in grasps if g.T_obj_grasp[:3, 2] @ UP < -0.9]
    assert top_down and all(abs(g.width_m - 0.025) < 0.004 for g in top_down)
    for g in top_down:  # the pads still reach the bar (its top is 1.2 cm up): the contacts lie on them
        assert g.T_obj_grasp[:3, 3] @ UP + plane[3] - gripper.pad_length_m / 2 <= 0.012


def test_a_mesh_without_collision_model_or_a_failed_plan_gives_a_reason_not_an_exception():
    """The one way both the pipeline and fusion handle planning failures: a reason per scene or per object."""
    box = trimesh.creation.box((0.05, 0.05, 0.1))
    nan_mesh = trimesh.Trimesh(np.full((3, 3), np.nan), [[0, 1, 2]], process=False)
    scene, reason = SceneMeshes.build([box, nan_mesh], [np.eye(4), np.eye(4)])
    assert scene is None and reason.startswith("no collision models of the frame's meshes: ValueError")
    scene, reason = SceneMeshes.build([box], [make_transform(np.eye(3), [0.0, 0.0, 0.05])])
    assert scene is not None and reason == ""
    grasps, reason = scene.plan_or_reason(GraspPlanner(), 0, np.array([0.0, 0.0, 1.0, 0.0]))
    assert grasps and reason == ""
    grasps, reason = scene.plan_or_reason(GraspPlanner(), 1, None)  # no such mesh
    assert grasps == [] and reason.startswith("IndexError")


def test_contacts_on_surface_no_view_saw_rank_below_seen_ones():
    """A fused mesh says which of its surface the views saw (`observed` per vertex): a grasp with a contact on the
    completion's guess ranks below one whose contacts were both seen. A 6 x 6 x 10 cm box closes across x or y alike;
    which pair of faces the camera saw decides."""
    from sam3d_ros.geometry.grasps import OBSERVED_ATTRIBUTE

    box = trimesh.creation.box(extents=(0.06, 0.06, 0.10))
    vertices, faces = trimesh.remesh.subdivide_to_size(box.vertices, box.faces, max_edge=0.01)
    planner = GraspPlanner(max_grasps=5)
    for seen_axis in (0, 1):
        mesh = trimesh.Trimesh(vertices, faces, process=False)
        unseen_axis = 1 - seen_axis
        mesh.vertex_attributes[OBSERVED_ATTRIBUTE] = (np.abs(mesh.vertices[:, unseen_axis]) < 0.0299).astype(np.float32)
        grasps = planner.plan(mesh)
        assert len(grasps) >= 3
        for grasp in grasps[:3]:
            closing = grasp.contacts_obj()[1] - grasp.contacts_obj()[0]
            assert abs(closing[seen_axis]) > 0.9 * np.linalg.norm(closing), (seen_axis, closing)
    plain = planner.plan(trimesh.Trimesh(vertices, faces, process=False))  # no attribute: both directions
    closing = np.array([g.contacts_obj()[1] - g.contacts_obj()[0] for g in plain])
    assert len(plain) >= 3 and np.all(np.abs(closing[:, :2]).max(axis=1) > 0.05)
