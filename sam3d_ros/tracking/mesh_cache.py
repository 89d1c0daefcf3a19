"""Versioned mesh files of tracked objects, for RViz MESH_RESOURCE markers (no ROS needed).

Each write goes to a new file name, `<safe id>_v<version>.<ext>`: RViz caches a mesh by its URI, so a changed mesh
must come under a new name. The previous versions are kept a while (RViz may still be loading one) and then pruned,
unless the cache is an archive (`keep_versions=None`: every file stays, as a recording that refers to them needs).
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Iterable

import numpy as np
import trimesh

from sam3d_ros.geometry.types import InputError

FORMATS = ("ply", "glb", "stl", "obj")  # vertex colours: PLY and GLB keep RGBA, OBJ keeps RGB, STL has none
_CACHE_FILE = re.compile(r"^(?P<stem>[A-Za-z0-9_]+)_v(?P<version>[0-9]+)\.(?P<ext>ply|glb|stl|obj)$")


def safe_name(object_id: str) -> str:
    """object_id with every character outside [A-Za-z0-9_] replaced by '_' (as conversions.frame_name does)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(object_id))
    if not name:
        raise InputError("object id is empty, it cannot name a mesh file")
    return name


def check_mesh_formats(formats: tuple[str, ...], name: str = "mesh formats") -> None:
    """InputError naming `name` unless every format is a distinct one of FORMATS (an empty tuple passes)."""
    if any(f not in FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise InputError(f"{name} must be distinct ones of {', '.join(FORMATS)}, got {formats}")


class MeshCache:
    """Mesh files of objects in one directory: write(id, version, mesh) -> {ext: path}; uri(path) for markers.

    Only files named like the cache's own (`<name>_v<n>.<ply|glb|stl|obj>`) are ever deleted. Two object ids that
    sanitise to the same name cannot share one cache (InputError), as they could not share a TF frame either.
    """

    def __init__(self, directory: str | os.PathLike, formats: Iterable[str] = ("glb",), keep_versions: int | None = 2) -> None:
        formats = tuple(str(f).lower().lstrip(".") for f in ([formats] if isinstance(formats, str) else formats))
        if not formats:
            raise InputError(f"mesh formats must be distinct ones of {', '.join(FORMATS)}, got {formats}")
        check_mesh_formats(formats)
        if keep_versions is not None and (isinstance(keep_versions, bool) or not isinstance(keep_versions, int) or keep_versions < 1):
            raise InputError(f"keep_versions must be an integer >= 1 or None (keep all), got {keep_versions!r}")
        self.directory = Path(directory).expanduser().resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.formats = formats
        self.keep_versions = keep_versions
        self._owners: dict[str, str] = {}  # safe name -> object id that uses it
        self._lock = threading.Lock()

    def write(self, object_id: str, version: int, mesh_obj: trimesh.Trimesh) -> dict[str, Path]:
        """Write the mesh in every format as `<safe id>_v<version>.<ext>` (atomically) and prune the object's files.

        Kept afterwards: this version and the keep_versions - 1 newest lower ones. Higher versions are deleted too:
        they are left over from an earlier run whose counter went further.
        """
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
            raise InputError(f"mesh version must be an integer >= 0, got {version!r}")
        version = int(version)
        if mesh_obj is None or len(mesh_obj.faces) == 0:
            raise InputError(f"object '{object_id}' mesh has no faces, nothing to write")
        if not np.isfinite(np.asarray(mesh_obj.vertices, dtype=np.float64)).all():
            raise InputError(f"object '{object_id}' mesh has non-finite vertices")
        with self._lock:
            stem = self._claim(object_id)
            paths = {}
            for ext in self.formats:
                data = mesh_obj.export(file_type=ext)
                path = self.directory / f"{stem}_v{version}.{ext}"
                temporary = self.directory / f".{path.name}.{os.getpid()}.tmp"  # never matches _CACHE_FILE
                temporary.write_bytes(data.encode() if isinstance(data, str) else data)
                os.replace(temporary, path)  # a reader never sees a half-written mesh
                paths[ext] = path
            if self.keep_versions is not None:
                keep = sorted(v for v in self._versions(stem) if v < version)[::-1][: self.keep_versions - 1]
                self._delete(stem, keep=set(keep) | {version})
            return paths

    def uri(self, path: str | os.PathLike) -> str:
        """'file://' + the absolute path, not percent-encoded (ROS resource_retriever opens the path verbatim)."""
        return "file://" + str(Path(path).expanduser().resolve())

    def remove(self, object_id: str) -> None:
        """Delete every file of the object (an archive keeps them)."""
        with self._lock:
            stem = safe_name(object_id)
            if self._owners.get(stem, str(object_id)) != str(object_id):
                return  # the name belongs to another object id
            if self.keep_versions is not None:
                self._delete(stem, keep=set())
            self._owners.pop(stem, None)

    def clear(self) -> None:
        """Delete every cache file in the directory (any object, from this run or an earlier one)."""
        with self._lock:
            for path in self.directory.iterdir():
                if _CACHE_FILE.match(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
            self._owners.clear()

    def _claim(self, object_id: str) -> str:
        stem = safe_name(object_id)
        owner = self._owners.setdefault(stem, str(object_id))
        if owner != str(object_id):
            raise InputError(f"object ids '{owner}' and '{object_id}' both give the mesh file name '{stem}'")
        return stem

    def _versions(self, stem: str) -> set[int]:
        versions = set()
        for path in self.directory.iterdir():
            match = _CACHE_FILE.match(path.name)
            if match and match["stem"] == stem:
                versions.add(int(match["version"]))
        return versions

    def _delete(self, stem: str, keep: set[int]) -> None:
        for path in self.directory.iterdir():
            match = _CACHE_FILE.match(path.name)
            if match and match["stem"] == stem and int(match["version"]) not in keep:
                path.unlink(missing_ok=True)
