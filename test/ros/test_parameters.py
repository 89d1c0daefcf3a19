"""config/perception.yaml and launch/perception.launch.py agree with the parameters the node declares."""
import ast
from pathlib import Path

import yaml

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


def _launch_overrides() -> dict[str, str]:
    """name -> value_type of every ParameterValue(..., value_type=T) the launch file passes to the node."""
    tree = ast.parse((ROOT / "launch" / "perception.launch.py").read_text())
    overrides = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "ParameterValue":
                    value_type = next(k.value.id for k in value.keywords if k.arg == "value_type")
                    overrides[key.value] = value_type
    return overrides


def test_launch_file_overrides_declared_parameters_with_their_types():
    overrides = _launch_overrides()
    assert {"backend", "target_frame", "models_dir", "sam_checkpoint"} <= set(overrides)
    for name, value_type in overrides.items():
        assert name in PARAMETERS, f"launch file sets '{name}', which the node does not declare"
        assert value_type == type(PARAMETERS[name][0]).__name__, f"{name}: launch {value_type}, node {type(PARAMETERS[name][0]).__name__}"


def test_launch_arguments_have_defaults_matching_the_yaml():
    """A launch argument named like a parameter defaults to the value the YAML documents (no silent override)."""
    tree = ast.parse((ROOT / "launch" / "perception.launch.py").read_text())
    params = yaml.safe_load((ROOT / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]
    declared = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument":
            default = next((k.value for k in node.keywords if k.arg == "default_value"), None)
            declared[node.args[0].value] = default.value if isinstance(default, ast.Constant) else None
    assert {"camera", "params_file", "backend", "target_frame", "rviz"} <= set(declared)
    for name in _launch_overrides():
        assert declared[name] == params[name], f"launch argument {name} defaults to {declared[name]!r}, YAML {params[name]!r}"
