"""config/perception.yaml and launch/perception.launch.py agree with the parameters the node declares."""
import ast
from pathlib import Path

import yaml

from sam3d_ros.ros.launch_arguments import PARAMETER_ARGUMENTS, parameter_overrides
from sam3d_ros.ros.perception_node import PARAMETERS

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_sets_every_declared_parameter_with_its_type():
    params = yaml.safe_load((ROOT / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        default = PARAMETERS[name][0]
        assert type(value) is type(default), f"{name}: YAML {type(value).__name__}, node {type(default).__name__}"
        assert value == default, f"{name}: the YAML documents {value!r} but the node defaults to {default!r}"


def test_every_parameter_has_a_description():
    for name, (_, description) in PARAMETERS.items():
        assert len(description) > 10, name


def _declared_launch_arguments() -> dict[str, object]:
    """name -> default of every DeclareLaunchArgument in the launch file (None when it is not a constant)."""
    tree = ast.parse((ROOT / "launch" / "perception.launch.py").read_text())
    declared = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            default = next((k.value for k in node.keywords if k.arg == "default_value"), None)
            declared[node.args[0].value] = default.value if isinstance(default, ast.Constant) else None
    return declared


def test_only_launch_arguments_the_user_gave_override_the_parameter_file():
    """A user's YAML with target_frame: base_link or backend: sam3d holds unless the launch line says otherwise."""
    not_given = {name: "" for name in PARAMETER_ARGUMENTS}
    assert parameter_overrides(not_given) == {}
    assert parameter_overrides({**not_given, "target_frame": "base_link"}) == {"target_frame": "base_link"}
    assert parameter_overrides({**not_given, "backend": "sam3d", "sam3d_worker": "tcp://127.0.0.1:5556"}) == {
        "backend": "sam3d", "sam3d_worker": "tcp://127.0.0.1:5556"}
    assert parameter_overrides({"camera": "/cam", "rviz": "true"}) == {}  # not parameters


def test_parameter_arguments_are_string_parameters_declared_with_empty_defaults():
    declared = _declared_launch_arguments()
    assert {"camera", "params_file", "rviz"} <= set(declared)
    for name in PARAMETER_ARGUMENTS:
        assert name in PARAMETERS and isinstance(PARAMETERS[name][0], str), name
        assert declared.get(name) == "", f"launch argument {name} must default to '' (= as the parameter file says)"


def test_the_launch_file_passes_the_parameter_file_then_only_the_given_arguments():
    source = (ROOT / "launch" / "perception.launch.py").read_text()
    tree = ast.parse(source)
    calls = {getattr(n.func, "id", getattr(n.func, "attr", "")) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert {"OpaqueFunction", "parameter_overrides"} <= calls
    assert "ParameterValue" not in calls, "a launch argument must not override the file unless given"
    assert 'parameters=[LaunchConfiguration("params_file")] + ([given] if given else [])' in source


def test_an_unknown_fusion_cpu_priority_is_refused_in_one_line_naming_it():
    import pytest

    from sam3d_ros.ros.perception_node import validate_parameters

    params = {name: default for name, (default, _) in PARAMETERS.items()}
    validate_parameters(params)  # the defaults pass
    with pytest.raises(ValueError, match="^fusion_cpu_priority must be one of idle, low, got 'lowest'$"):
        validate_parameters({**params, "fusion_cpu_priority": "lowest"})
