"""Parallel-jaw gripper geometry: one parameter set (Franka Hand defaults), read from YAML or node parameters.

Gripper frame (the grasp pose's frame): origin at the tool centre point (TCP) midway between the fingertip pads,
+z the approach direction (from the hand into the object), fingers closing along +-y, x = y cross z.
The fingers are boxes of `finger_thickness` (y) x `finger_width` (x) x `finger_length` (z) whose inner faces are
`opening / 2` from the TCP along +-y; their tips lie `pad_length / 2` beyond the TCP along +z. The palm is a box of
`palm_width` (y) x `palm_depth` (x) x `palm_height` (z) behind the fingers' roots.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sam3d_ros.geometry.types import InputError

# Documented keys (README "Grasps"): name -> meaning. Every key is a field of GripperParams.
GRIPPER_KEYS: dict[str, str] = {
    "max_opening_m": "largest jaw opening (m)",
    "min_opening_m": "smallest width the jaws can hold (m); thinner contacts are not grasped",
    "finger_length_m": "finger length from palm to fingertip (m)",
    "finger_width_m": "finger width along the gripper x axis (m)",
    "finger_thickness_m": "finger thickness along the closing axis y (m)",
    "pad_length_m": "contact pad length along the approach axis z (m)",
    "pad_width_m": "contact pad width along x (m)",
    "palm_width_m": "palm size along y (m)",
    "palm_depth_m": "palm size along x (m)",
    "palm_height_m": "palm size along z (m)",
    "friction": "friction coefficient assumed at the pads (antipodal cone half-angle = atan(friction))",
    "clearance_m": "extra opening per side at the pre-grasp beyond the contact width (m)",
    "approach_distance_m": "pre-grasp stand-off along -z before moving in (m)",
    "max_force_n": "gripping force the hand closes with (N); used by MoveIt's posture and the physics check",
}


@dataclass(frozen=True)
class GripperParams:
    """Parallel-jaw gripper geometry in metres; defaults are the Franka Emika Hand."""

    max_opening_m: float = 0.08
    min_opening_m: float = 0.002
    finger_length_m: float = 0.05
    finger_width_m: float = 0.02
    finger_thickness_m: float = 0.012
    pad_length_m: float = 0.02
    pad_width_m: float = 0.02
    palm_width_m: float = 0.20
    palm_depth_m: float = 0.06
    palm_height_m: float = 0.06
    friction: float = 0.5
    clearance_m: float = 0.01
    approach_distance_m: float = 0.10
    max_force_n: float = 70.0

    def validate(self) -> "GripperParams":
        """Raise InputError naming the first inconsistent value; return self."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"gripper {field.name} must be a positive number, got {value!r}")
        if self.min_opening_m >= self.max_opening_m:
            raise InputError(f"gripper min_opening_m {self.min_opening_m} must be < max_opening_m {self.max_opening_m}")
        if self.palm_width_m < self.max_opening_m + 2 * self.finger_thickness_m:
            raise InputError("gripper palm_width_m must hold both fingers at max_opening_m (>= max_opening_m + 2 finger_thickness_m)")
        return self

    def pre_grasp_opening(self, width_m: float) -> float:
        """Jaw opening while approaching a grasp of contact width `width_m`."""
        return min(width_m + 2 * self.clearance_m, self.max_opening_m)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "gripper") -> "GripperParams":
        """Defaults overridden by `values` (keys of GRIPPER_KEYS); unknown keys and non-numbers are InputErrors."""
        unknown = sorted(set(values) - set(GRIPPER_KEYS))
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(GRIPPER_KEYS)}")
        try:
            params = cls(**{k: float(v) for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: every value must be a number: {exc}") from exc
        return params.validate()

    @classmethod
    def from_yaml(cls, path: Path) -> "GripperParams":
        """A YAML mapping of GRIPPER_KEYS (missing keys keep the Franka Hand default)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"gripper file not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"gripper file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(values, dict):
            raise InputError(f"gripper file {path} must be a mapping of {', '.join(GRIPPER_KEYS)}")
        return cls.from_dict(values, f"gripper file {path}")

    def as_dict(self) -> dict[str, float]:
        """The parameter set as a plain mapping (YAML / node parameters)."""
        return dataclasses.asdict(self)
