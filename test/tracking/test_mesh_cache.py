"""Tests of sam3d_ros.tracking.mesh_cache: versioned mesh files for MESH_RESOURCE markers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from sam3d_ros.geometry.types import InputError
from sam3d_ros.ros.conversions import frame_name
from sam3d_ros.tracking.mesh_cache import MeshCache, safe_name


def coloured_box(extents=(0.1, 0.2, 0.3), seed: int = 0) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=extents)
    mesh.visual.vertex_colors = np.random.default_rng(seed).integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8)
    return mesh


def load(path: Path) -> trimesh.Trimesh:
    return trimesh.load(path, force="mesh", process=False)


def colours_by_position(mesh: trimesh.Trimesh, reference: trimesh.Trimesh) -> np.ndarray:
    """mesh's vertex colours in the vertex order of `reference` (vertices matched by position)."""
    index = [int(np.argmin(np.linalg.norm(mesh.vertices - v, axis=1))) for v in reference.vertices]
    np.testing.assert_allclose(mesh.vertices[index], reference.vertices, atol=1e-6)
    return np.asarray(mesh.visual.vertex_colors)[index]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_every_format_is_written_and_reads_back(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"  # created, parents included
    cache = MeshCache(directory, formats=("ply", "glb", "stl", "obj"))
    mesh = coloured_box()
    paths = cache.write("mug 3/a", 4, mesh)
    assert {ext: p.name for ext, p in paths.items()} == {
        "ply": "mug_3_a_v4.ply", "glb": "mug_3_a_v4.glb", "stl": "mug_3_a_v4.stl", "obj": "mug_3_a_v4.obj",
    }
    assert names(directory) == sorted(p.name for p in paths.values())  # no temporary files left
    for ext, path in paths.items():
        back = load(path)
        assert len(back.faces) == 12, ext
        np.testing.assert_allclose(np.sort(back.bounds, axis=0), mesh.bounds, atol=1e-6)  # metres, object frame
    for ext in ("ply", "glb"):  # RGBA survives
        np.testing.assert_array_equal(colours_by_position(load(paths[ext]), mesh), mesh.visual.vertex_colors, err_msg=ext)
    obj_colours = colours_by_position(load(paths["obj"]), mesh)  # OBJ keeps RGB only
    np.testing.assert_array_equal(obj_colours[:, :3], mesh.visual.vertex_colors[:, :3])


def test_uri_is_an_absolute_file_uri_without_percent_encoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "mesh cache"
    cache = MeshCache(directory)
    path = cache.write("a", 1, coloured_box())["glb"]
    uri = cache.uri(path)
    assert uri == "file://" + str(directory.resolve() / "a_v1.glb") and uri.startswith("file:///")
    assert " " in uri and "%20" not in uri  # resource_retriever opens the path after 'file://' as it is
    monkeypatch.chdir(directory)
    assert cache.uri("a_v1.glb") == uri
    assert Path(uri[len("file://"):]).is_file()


def test_old_versions_are_pruned_per_object(tmp_path: Path) -> None:
    cache = MeshCache(tmp_path, formats=("glb", "ply"), keep_versions=2)
    other = tmp_path / "notes_v1.txt"
    other.write_text("not the cache's")
    for version in (1, 2, 3, 4):
        cache.write("a", version, coloured_box(seed=version))
        cache.write("a_v1", version, coloured_box())  # a name that looks like a versioned 'a' file
    assert names(tmp_path) == [
        "a_v1_v3.glb", "a_v1_v3.ply", "a_v1_v4.glb", "a_v1_v4.ply",
        "a_v3.glb", "a_v3.ply", "a_v4.glb", "a_v4.ply",
        "notes_v1.txt",
    ]
    np.testing.assert_array_equal(
        colours_by_position(load(tmp_path / "a_v4.ply"), coloured_box(seed=4)), coloured_box(seed=4).visual.vertex_colors
    )
    single = MeshCache(tmp_path / "one", keep_versions=1)
    single.write("x", 5, coloured_box())
    single.write("x", 6, coloured_box())
    assert names(tmp_path / "one") == ["x_v6.glb"]


def test_versions_left_by_an_earlier_run_are_replaced(tmp_path: Path) -> None:
    MeshCache(tmp_path).write("a", 7, coloured_box())
    cache = MeshCache(tmp_path, keep_versions=2)  # a restarted node counts from 1 again
    cache.write("a", 1, coloured_box())
    assert names(tmp_path) == ["a_v1.glb"]
    cache.write("a", 2, coloured_box())
    assert names(tmp_path) == ["a_v1.glb", "a_v2.glb"]


def test_remove_and_clear(tmp_path: Path) -> None:
    cache = MeshCache(tmp_path, formats=("glb", "stl"), keep_versions=3)
    for version in (1, 2):
        cache.write("a", version, coloured_box())
        cache.write("b", version, coloured_box())
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "sub_v1.glb").mkdir()  # not a file: left alone
    cache.remove("a")
    assert names(tmp_path) == ["b_v1.glb", "b_v1.stl", "b_v2.glb", "b_v2.stl", "keep.txt", "sub_v1.glb"]
    cache.remove("never written")  # nothing to do
    cache.clear()
    assert names(tmp_path) == ["keep.txt", "sub_v1.glb"]
    cache.write("a", 3, coloured_box())
    assert "a_v3.glb" in names(tmp_path)


def test_an_archive_keeps_every_version_and_removed_objects(tmp_path: Path) -> None:
    """keep_versions=None (a recording's meshes, `sam3d-ros replay`): nothing that a message may refer to goes."""
    cache = MeshCache(tmp_path, formats=("ply",), keep_versions=None)
    for version in (1, 2, 3):
        cache.write("a", version, coloured_box(seed=version))
    cache.remove("a")
    assert names(tmp_path) == ["a_v1.ply", "a_v2.ply", "a_v3.ply"]


def test_names_are_sanitised_like_frame_names(tmp_path: Path) -> None:
    for object_id in ("mug 3/a-b", "7", "a.b c", "already_fine", "ä"):
        assert safe_name(object_id) == frame_name("", object_id)
    cache = MeshCache(tmp_path)
    cache.write("a b", 1, coloured_box())
    with pytest.raises(InputError, match="'a b' and 'a_b' both give the mesh file name 'a_b'"):
        cache.write("a_b", 1, coloured_box())
    with pytest.raises(InputError, match="object id is empty"):
        cache.write("", 1, coloured_box())


def test_bad_input(tmp_path: Path) -> None:
    empty = trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    cache = MeshCache(tmp_path)
    with pytest.raises(InputError, match="'e' mesh has no faces"):
        cache.write("e", 1, empty)
    broken = coloured_box()
    broken.vertices[0, 0] = np.inf
    with pytest.raises(InputError, match="non-finite vertices"):
        cache.write("f", 1, broken)
    with pytest.raises(InputError, match="version must be an integer >= 0"):
        cache.write("g", -1, coloured_box())
    with pytest.raises(InputError, match="mesh formats must be distinct ones of ply, glb, stl, obj"):
        MeshCache(tmp_path, formats=("glb", "dae"))
    with pytest.raises(InputError, match="mesh formats"):
        MeshCache(tmp_path, formats=("glb", "GLB"))
    with pytest.raises(InputError, match="keep_versions"):
        MeshCache(tmp_path, keep_versions=0)
    assert names(tmp_path) == []
