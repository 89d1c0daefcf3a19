"""The MuJoCo grasp check itself: a good grasp on a true YCB mesh lifts it, a grasp beside it misses, a hand driven
into the table is a collision, and `eval-grasps` reports per part and category."""
import numpy as np
import pytest

from sam3d_ros.geometry.transforms import make_transform
from sam3d_ros.tools.grasp_sim import GraspSimulation, object_mass_kg, YCB_MASSES_KG
from sam3d_ros.tools.synthetic import load_ycb_mesh, upright_pose

NAME = "004_sugar_box"  # a tuning object: 4.9 x 9.4 x 17.6 cm


@pytest.fixture(scope="module")
def box_scene():
    T_world_obj = upright_pose(NAME, 0.0, 0.0, 0.0)
    bounds = load_ycb_mesh(NAME).bounds
    centre = (T_world_obj @ np.append(bounds.mean(axis=0), 1.0))[:3]
    top = (T_world_obj @ np.append(bounds[1], 1.0))[2]
    return GraspSimulation([(NAME, T_world_obj)]), centre, top, float(bounds[1, 0] - bounds[0, 0])


def _top_down(x, y, z, closing_axis):
    y_axis, z_axis = np.eye(3)[closing_axis], np.array([0.0, 0.0, -1.0])
    return make_transform(np.column_stack([np.cross(y_axis, z_axis), y_axis, z_axis]), [x, y, z])


def test_a_top_down_grasp_across_the_narrow_side_lifts_the_box(box_scene):
    sim, centre, top, width = box_scene
    result = sim.run(0, _top_down(centre[0], centre[1], top - 0.03, 0), width)
    assert result.outcome == "success", result
    assert result.lift_height_m > 0.08


def test_a_grasp_beside_the_box_misses_and_one_into_the_table_collides(box_scene):
    sim, centre, top, width = box_scene
    assert sim.run(0, _top_down(centre[0], centre[1] + 0.15, top - 0.03, 0), width).outcome == "miss"
    into_table = sim.run(0, _top_down(centre[0], centre[1], 0.01, 0), width)
    assert into_table.outcome == "collision" and into_table.detail in ("table", "pushed the object")
    # The box is 9.4 cm along y: wider than the 8 cm opening, the fingers land on its top.
    assert sim.run(0, _top_down(centre[0], centre[1], top - 0.03, 1), 0.079).outcome != "success"


def test_masses_are_ycb_published_where_known_else_density_times_volume():
    assert object_mass_kg(NAME) == YCB_MASSES_KG[NAME] == 0.514
    assert "070-b_colored_wood_blocks" not in YCB_MASSES_KG
    assert 0 < object_mass_kg("070-b_colored_wood_blocks") < 0.1


def test_eval_grasps_reports_per_part_and_category(capsys):
    from sam3d_ros.tools.cli import main

    assert main(["eval-grasps", "--scenes", "1", "--parts", "tuning", "--top", "2", "--objects", "2"]) == 0
    out = capsys.readouterr().out
    assert "tuning:" in out and "top-1" in out and "top-5" in out and "baseline" in out and "held-out" not in out


def test_footprint_width_is_the_narrowest_width_of_the_object_as_it_rests():
    import trimesh

    from sam3d_ros.geometry.transforms import make_transform
    from sam3d_ros.tools.grasp_evaluation import footprint_width

    box = trimesh.creation.box([0.10, 0.04, 0.02])
    plane_cam = np.array([0.0, -1.0, 0.0, 0.5])  # table normal toward the camera (up = -y)
    turn = np.deg2rad(30.0)
    # Lying flat (its 2 cm side vertical, along -y), turned 30 degrees about the vertical: 4 cm across.
    R_flat = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    R_turn = np.array([[np.cos(turn), 0, np.sin(turn)], [0, 1, 0], [-np.sin(turn), 0, np.cos(turn)]])
    T = make_transform(R_turn @ R_flat, [0.1, 0.2, 0.8])
    assert footprint_width(box.vertices, T, plane_cam) == pytest.approx(0.04, abs=1e-9)
    # Standing on its 4 x 2 cm end: 2 cm across.
    R_up = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], float)  # box x (10 cm) along camera -y (up)
    assert footprint_width(box.vertices, make_transform(R_up, [0, 0, 1]), plane_cam) == pytest.approx(0.02, abs=1e-9)
