"""config/perception.yaml and launch/perception.launch.py agree with the parameters the node declares."""
import ast
from pathlib import Path

import yaml

from sam3d_ros.perception_node import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent


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


def test_launch_file_only_overrides_declared_parameters():
    tree = ast.parse((ROOT / "launch" / "perception.launch.py").read_text())
    overridden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "parameters":
            for element in node.value.elts:
                if isinstance(element, ast.Dict):
                    overridden |= {key.value for key in element.keys}
    assert overridden and overridden <= set(PARAMETERS)
