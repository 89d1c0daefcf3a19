"""`sam3d-ros eval-tracking`: the tracker's accuracy on seeded rendered sequences, and its command line."""
import pytest

from sam3d_ros.tools import cli
from sam3d_ros.tools.synthetic import moving_object_sequence
from sam3d_ros.tools.tracking_evaluation import format_tracking_evaluation, run_tracking_evaluation, track_sequence


def test_an_exact_mesh_is_tracked_within_a_centimetre_and_two_degrees():
    sequence = moving_object_sequence(["004_sugar_box"], n_frames=20, seed=2)
    result = track_sequence(sequence, 2, pipeline=None)
    assert len(result.centre_error_cm) == 19 and result.lost_frames == 0 and result.reconstructions == 1
    assert result.travel_cm > 2.0, "the object must move for the errors to mean anything"
    assert result.within(1.0, 2.0), (max(result.centre_error_cm), max(result.rotation_error_deg))
    assert len(result.tilt_error_deg) == 19 and max(result.tilt_error_deg) <= max(result.rotation_error_deg) + 1e-9
    assert not result.within(0.0, 0.0)  # errors are measured, not zero


def test_the_report_has_one_row_per_object_and_a_total():
    results = run_tracking_evaluation(["005_tomato_soup_can"], seeds=1, n_frames=4, mesh_sources=["backend"])
    assert list(results) == ["backend"] and len(results["backend"]) == 1
    text = format_tracking_evaluation(results["backend"], "depth backend")
    rows = [line.split() for line in text.splitlines()]
    assert [row[0] for row in rows if row and row[0] in ("005_tomato_soup_can", "all")] == ["005_tomato_soup_can", "all"]
    assert "meshes: depth backend" in text and ("1/1" in text or "0/1" in text)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mesh sources"):
        run_tracking_evaluation(["004_sugar_box"], mesh_sources=["perfect"])
    assert cli.main(["eval-tracking", "--objects", "no_such_object", "--seeds", "1"]) == cli.EXIT_BAD_INPUT


def test_the_command_prints_both_tables(capsys):
    assert cli.main(["eval-tracking", "--objects", "010_potted_meat_can", "--seeds", "1", "--frames", "3"]) == 0
    out = capsys.readouterr().out
    assert "meshes: depth backend" in out and "meshes: exact" in out
