"""Which launch arguments override the parameter file (used by launch/perception.launch.py; no ROS imports).

A launch argument that names a node parameter defaults to '' = "as the parameter file says": only the arguments a
user actually gave (`target_frame:=base_link`) go to the node after `params_file`, so a YAML's own values hold.
"""
from __future__ import annotations

from typing import Mapping

#: Launch arguments that set the node parameter of the same name when given (all string parameters).
PARAMETER_ARGUMENTS = (
    "backend", "sam3d_worker", "models_dir", "sam_checkpoint", "target_frame", "image_transport", "depth_image_transport",
)


def parameter_overrides(arguments: Mapping[str, str]) -> dict[str, str]:
    """The node parameters to pass after the parameter file: each PARAMETER_ARGUMENTS entry given a value."""
    return {name: str(arguments[name]) for name in PARAMETER_ARGUMENTS if str(arguments.get(name, "") or "").strip()}
