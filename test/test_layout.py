"""The package's folders read as the data flow, and imports only point down it.

Stages, bottom to top: geometry, sam3d (the worker side), reconstruction, tracking, ros, tools. A module may import
its own stage and the stages below; nothing imports in a circle (imports inside functions count: a lazy import
still ties the modules); the core below `ros/` imports no ROS package.
"""
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sam3d_ros"
STAGES = ["geometry", "sam3d", "reconstruction", "tracking", "ros", "tools"]
#: Top-level modules: the package marker and the `python -m sam3d_ros.perception_node` shim (above every stage).
TOP_LEVEL = {"__init__", "perception_node"}
ROS_PACKAGES = {"rclpy", "tf2_ros", "message_filters", "cv_bridge", "launch", "launch_ros", "ament_index_python",
                "rosidl_runtime_py", "builtin_interfaces"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, including those inside functions."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from sam3d_ros.x import y` imports module x.y when y is a module
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in known else base, node.lineno))
    return found


def _stage(module: str) -> int:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in STAGES:
        return STAGES.index(parts[1])
    return len(STAGES)  # top level


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {m for m, _ in _imports(name, path, known) if m in known and m != name} for name, path in modules.items()}


def test_every_module_lives_in_a_stage_folder():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.stem not in TOP_LEVEL]
    assert not loose, f"modules outside the stage folders: {loose} (put each in its stage's folder)"
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.rglob("*.py")))
    assert folders == sorted(STAGES), folders
    for stage in STAGES:
        assert (PACKAGE / stage / "__init__.py").is_file(), f"{stage}/ is not a package"


def test_imports_point_down_the_data_flow():
    modules = _modules()
    known = set(modules)
    upward = []
    for name, path in modules.items():
        for imported, line in _imports(name, path, known):
            if imported.startswith("sam3d_ros.") and _stage(imported) > _stage(name):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not upward, "imports pointing up the data flow:\n" + "\n".join(upward)


def test_there_is_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(stack[stack.index(nxt):] + [node, nxt]) if nxt in stack else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_backend_interface_imports_no_backend():
    graph = _graph()
    base = "sam3d_ros.reconstruction.backends.base"
    assert not {m for m in graph[base] if m.startswith("sam3d_ros.reconstruction")}, graph[base]
    factory = graph["sam3d_ros.reconstruction.backends.factory"]
    assert {"sam3d_ros.reconstruction.backends.depth", "sam3d_ros.reconstruction.backends.sam3d"} <= factory


def test_the_core_below_ros_imports_no_ros_package():
    modules = _modules()
    known = set(modules)
    found = []
    for name, path in modules.items():
        if _stage(name) >= STAGES.index("ros"):
            continue
        for imported, line in _imports(name, path, known):
            top = imported.split(".")[0]
            if top in ROS_PACKAGES or top.endswith("_msgs"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not found, "ROS imports in the core:\n" + "\n".join(found)


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path, monkeypatch):
    """The checks above can fail: a geometry module importing the node, and two modules importing each other."""
    fake = tmp_path / "sam3d_ros"
    for stage in STAGES:
        (fake / stage).mkdir(parents=True)
        (fake / stage / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "geometry" / "a.py").write_text("from sam3d_ros.ros import node\nfrom sam3d_ros.geometry import b\n")
    (fake / "geometry" / "b.py").write_text("def f():\n    from sam3d_ros.geometry.a import g\n")
    (fake / "ros" / "node.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    for check in (test_imports_point_down_the_data_flow, test_there_is_no_import_circle):
        try:
            check()
        except AssertionError as exc:
            assert "sam3d_ros" in str(exc)
        else:
            raise AssertionError(f"{check.__name__} passed on a broken tree")


def test_tests_mirror_the_layout():
    test_root = Path(__file__).resolve().parent
    folders = sorted(p.name for p in test_root.iterdir() if p.is_dir() and any(p.rglob("*.py")))
    assert set(folders) <= set(STAGES), f"test folders that are no stage: {set(folders) - set(STAGES)}"
    assert sorted(p.name for p in test_root.glob("test_*.py")) == ["test_colcon_build.py", "test_layout.py",
                                                                   "test_python_versions.py"]
