"""Executing a parallel-jaw grasp in MuJoCo on the true YCB meshes (the physics half of `sam3d-ros eval-grasps`).

Set-up, the same for every object and grasp (README "Grasps"):
- objects: free bodies made of convex parts of the TRUE YCB mesh (CoACD decomposition, cached on disk; the mesh's
  own convex hull when it is within HULL_RATIO of its volume), total mass from YCB's published masses
  (`YCB_MASSES_KG`) or, where none is listed, DENSITY_KG_M3 x the hull volume, spread over the parts by volume;
- table: a plane at world z = 0; friction FRICTION (sliding, torsional, rolling) on every contact;
- hand: a free-floating, gravity-compensated Franka-Hand-sized palm (HAND_MASS_KG) welded to a commanded pose
  (mocap target; a dynamic body so that friction sees its motion), with two fingers on prismatic joints, each
  driven by a position actuator whose force is capped at the gripper's `max_force_n` (default 70 N);
- protocol: start at the pre-grasp (approach_distance_m back along -z, jaws at the pre-grasp opening), approach in
  APPROACH_S, close for CLOSE_S, lift 10 cm in LIFT_S, shake (SHAKE_AMPLITUDE_M along world x and y at SHAKE_HZ for
  SHAKE_S), hold HOLD_S.
- outcome: `success` when the object is still between the fingers and at least 8 cm above where it started after
  the hold; else `collision` (the hand hit the table or another object on the way in, which ends the trial, or it
  pushed the target by more than PUSH_LIMIT_M on the way in and the grasp then failed), `miss` (after closing the
  fingers do not both touch the object) or `slip` (held after closing, lost during lift, shake or hold).
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from sam3d_ros.geometry.gripper import GripperParams
from sam3d_ros.geometry.mesh_simplification import simplified_mesh
from sam3d_ros.geometry.transforms import quaternion_xyzw_from_matrix
from sam3d_ros.tools.synthetic import load_ycb_mesh

TIMESTEP_S = 0.002
FRICTION = (0.8, 0.01, 0.0005)  # MuJoCo sliding, torsional, rolling coefficients, all contacts
DENSITY_KG_M3 = 400.0
HULL_RATIO = 1.1
APPROACH_S, CLOSE_S, LIFT_S, SHAKE_S, HOLD_S = 0.6, 0.6, 1.0, 1.0, 2.0
LIFT_M = 0.10
SHAKE_AMPLITUDE_M, SHAKE_HZ = 0.02, 2.0
SUCCESS_HEIGHT_M = 0.08
FINGER_DAMPING = 200.0  # N s/m per finger joint: closing speed at most max_force / damping (0.35 m/s at 70 N)
HAND_MASS_KG, FINGER_MASS_KG = 0.7, 0.3  # palm about the Franka Hand's; fingers heavier than real (numerical: stable
#                                             stiff contacts at 2 ms steps, chosen on tuning objects)
NOSLIP_ITERATIONS = 10  # MuJoCo post-solve removing the creep of soft friction
WELD_SOLREF = "0.01 1"  # the hand follows the commanded (mocap) pose through this weld, gravity compensated
FINGER_KP = 5000.0  # N/m: the capped force is reached once a finger is 14 mm (70 N) short of its closed target
PUSH_LIMIT_M = 0.01

# Published masses of the YCB objects (Calli et al., "The YCB object and model set", 2015, Table 1), in kg.
YCB_MASSES_KG: dict[str, float] = {
    "002_master_chef_can": 0.414, "003_cracker_box": 0.411, "004_sugar_box": 0.514, "005_tomato_soup_can": 0.349,
    "006_mustard_bottle": 0.603, "007_tuna_fish_can": 0.171, "008_pudding_box": 0.187, "009_gelatin_box": 0.097,
    "010_potted_meat_can": 0.370, "011_banana": 0.066, "012_strawberry": 0.018, "013_apple": 0.068,
    "014_lemon": 0.029, "015_peach": 0.033, "016_pear": 0.049, "017_orange": 0.047, "018_plum": 0.025,
    "019_pitcher_base": 0.178, "021_bleach_cleanser": 1.131, "022_windex_bottle": 1.022, "024_bowl": 0.147,
    "025_mug": 0.118, "026_sponge": 0.0062, "029_plate": 0.279, "030_fork": 0.034, "031_spoon": 0.030,
    "032_knife": 0.031, "033_spatula": 0.0515, "035_power_drill": 0.895, "036_wood_block": 0.729,
    "037_scissors": 0.082, "038_padlock": 0.208, "040_large_marker": 0.0158, "042_adjustable_wrench": 0.252,
    "043_phillips_screwdriver": 0.097, "044_flat_screwdriver": 0.0984, "048_hammer": 0.665,
    "050_medium_clamp": 0.059, "051_large_clamp": 0.125, "052_extra_large_clamp": 0.202,
    "053_mini_soccer_ball": 0.123, "054_softball": 0.191, "055_baseball": 0.148, "056_tennis_ball": 0.058,
    "057_racquetball": 0.041, "058_golf_ball": 0.046, "061_foam_brick": 0.028, "062_dice": 0.0052,
    "077_rubiks_cube": 0.0945,
}

_COACD = {"threshold": 0.1, "max_convex_hull": 16, "preprocess_resolution": 25, "resolution": 500,
          "mcts_iterations": 30, "mcts_max_depth": 2, "mcts_nodes": 8, "seed": 0, "max_ch_vertex": 64}
_COACD_INPUT_FACES = 2000


def cache_dir() -> Path:
    """Where convex decompositions are kept ($SAM3D_ROS_CACHE or ~/.cache/sam3d_ros)."""
    return Path(os.environ.get("SAM3D_ROS_CACHE", Path.home() / ".cache" / "sam3d_ros")) / "convex_parts"


def convex_parts(name: str) -> list[np.ndarray]:
    """Vertex arrays (model frame, metres) of the convex parts of YCB object `name`; computed once, then cached."""
    key = hashlib.sha1(repr(sorted(_COACD.items())).encode()).hexdigest()[:8]
    path = cache_dir() / f"{name}-{key}.npz"
    if path.is_file():
        with np.load(path) as data:
            return [data[k] for k in sorted(data.files, key=lambda k: int(k[1:]))]
    mesh = load_ycb_mesh(name)
    hull = mesh.convex_hull
    if mesh.is_volume and hull.volume <= HULL_RATIO * mesh.volume:
        parts = [np.asarray(hull.vertices)]
    else:
        import coacd  # imported late: loaded before open3d it breaks open3d's import (std::bad_cast)

        coacd.set_log_level("error")
        small = simplified_mesh(mesh.copy(), _COACD_INPUT_FACES)
        pieces = coacd.run_coacd(coacd.Mesh(np.asarray(small.vertices), np.asarray(small.faces)), **_COACD)
        parts = [np.asarray(vertices) for vertices, _ in pieces]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"p{i}": p for i, p in enumerate(parts)})
    return parts


def object_mass_kg(name: str) -> float:
    """YCB's published mass, else DENSITY_KG_M3 x the convex hull volume."""
    if name in YCB_MASSES_KG:
        return YCB_MASSES_KG[name]
    return DENSITY_KG_M3 * float(load_ycb_mesh(name).convex_hull.volume)


@dataclass
class TrialResult:
    """Outcome of one simulated grasp."""

    outcome: str  # "success", "collision", "miss" or "slip"
    lift_height_m: float  # how far the object's centre rose by the end
    detail: str = ""  # what the hand hit, for a collision


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in np.ravel(values))


def _quat_wxyz(R: np.ndarray) -> np.ndarray:
    q = quaternion_xyzw_from_matrix(R)
    return np.array([q[3], q[0], q[1], q[2]])


def scene_xml(objects: list[tuple[str, np.ndarray]], gripper: GripperParams) -> str:
    """MJCF of the table, the objects (name, T_world_obj) and the hand (mocap palm + two slide fingers)."""
    g = gripper
    assets, bodies = [], []
    for index, (name, T_world_obj) in enumerate(objects):
        parts = convex_parts(name)
        volumes = np.array([max(trimesh.convex.convex_hull(p).volume, 1e-9) for p in parts])
        masses = object_mass_kg(name) * volumes / volumes.sum()
        geoms = []
        for k, (vertices, mass) in enumerate(zip(parts, masses)):
            assets.append(f'<mesh name="o{index}p{k}" vertex="{_fmt(vertices)}"/>')
            geoms.append(f'<geom type="mesh" mesh="o{index}p{k}" mass="{mass:.6g}" class="object"/>')
        bodies.append(
            f'<body name="object{index}" pos="{_fmt(T_world_obj[:3, 3])}" quat="{_fmt(_quat_wxyz(T_world_obj[:3, :3]))}">'
            f'<freejoint/>{"".join(geoms)}</body>'
        )
    tip = g.pad_length_m / 2
    finger_half = np.array([g.finger_width_m, g.finger_thickness_m, g.finger_length_m]) / 2
    palm_half = np.array([g.palm_depth_m, g.palm_width_m, g.palm_height_m]) / 2
    finger_z = tip - finger_half[2]
    palm_z = tip - g.finger_length_m - palm_half[2]
    stroke = g.max_opening_m / 2
    finger_kp = FINGER_KP
    force = g.max_force_n
    fingers = "".join(
        f'<body name="finger{side}" gravcomp="1" pos="0 {sign * (stroke + finger_half[1]):.6g} {finger_z:.6g}">'
        f'<joint name="slide{side}" type="slide" axis="0 {-sign} 0" range="0 {stroke:.6g}" damping="{FINGER_DAMPING}"/>'
        f'<geom type="box" size="{_fmt(finger_half)}" mass="{FINGER_MASS_KG}" class="pad"/></body>'
        for side, sign in (("L", -1), ("R", 1))
    )
    return f"""<mujoco model="grasp">
  <option timestep="{TIMESTEP_S}" gravity="0 0 -9.81" cone="elliptic" impratio="10" integrator="implicitfast" noslip_iterations="{NOSLIP_ITERATIONS}"/>
  <default>
    <geom friction="{_fmt(FRICTION)}" condim="6" solref="0.01 1" solimp="0.95 0.99 0.001"/>
    <default class="object"><geom condim="6"/></default>
    <default class="pad"><geom condim="6"/></default>
  </default>
  <asset>{"".join(assets)}</asset>
  <worldbody>
    <geom name="table" type="plane" size="2 2 0.1"/>
    {"".join(bodies)}
    <body name="target" mocap="true"/>
    <body name="hand" gravcomp="1">
      <freejoint name="hand"/>
      <geom name="palm" type="box" size="{_fmt(palm_half)}" pos="0 0 {palm_z:.6g}" mass="{HAND_MASS_KG}" class="pad"/>
      {fingers}
    </body>
  </worldbody>
  <equality><weld body1="target" body2="hand" solref="{WELD_SOLREF}"/></equality>
  <actuator>
    <position name="closeL" joint="slideL" kp="{finger_kp}" forcerange="-{force} {force}" ctrlrange="0 {stroke:.6g}"/>
    <position name="closeR" joint="slideR" kp="{finger_kp}" forcerange="-{force} {force}" ctrlrange="0 {stroke:.6g}"/>
  </actuator>
</mujoco>"""


class GraspSimulation:
    """One MuJoCo scene; `run` executes a grasp on object `target` from a fresh start each time."""

    def __init__(self, objects: list[tuple[str, np.ndarray]], gripper: GripperParams | None = None) -> None:
        import mujoco

        self._mujoco = mujoco
        self.gripper = gripper or GripperParams()
        self.model = mujoco.MjModel.from_xml_string(scene_xml(objects, self.gripper))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._hand = m.body("target").mocapid[0]
        self._hand_qpos = m.jnt_qposadr[m.joint("hand").id]
        self._hand_qvel = m.jnt_dofadr[m.joint("hand").id]
        self._object_bodies = [m.body(f"object{i}").id for i in range(len(objects))]
        self._hand_geoms = {m.geom("palm").id} | {m.body(f"finger{s}").geomadr[0] for s in "LR"}
        self._finger_geoms = {s: m.body(f"finger{s}").geomadr[0] for s in "LR"}
        self._table = m.geom("table").id
        self._settled = self._settle()

    def _settle(self) -> np.ndarray:
        """Let the objects come to rest (hand far above), and return the settled qpos."""
        mj = self._mujoco
        mj.mj_resetData(self.model, self.data)
        self._place_hand(np.array([0.0, 0.0, 2.0]), np.eye(3))
        for _ in range(int(0.5 / TIMESTEP_S)):
            mj.mj_step(self.model, self.data)
        return self.data.qpos.copy()

    def _place_hand(self, position: np.ndarray, R: np.ndarray) -> None:
        """Put the commanded pose and the hand itself at a pose, at rest."""
        q_wxyz = _quat_wxyz(R)
        self.data.mocap_pos[self._hand] = position
        self.data.mocap_quat[self._hand] = q_wxyz
        self.data.qpos[self._hand_qpos:self._hand_qpos + 3] = position
        self.data.qpos[self._hand_qpos + 3:self._hand_qpos + 7] = q_wxyz
        self.data.qvel[self._hand_qvel:self._hand_qvel + 6] = 0.0

    def _body_pos(self, body: int) -> np.ndarray:
        return self.data.xpos[body].copy()

    def _touching(self, geoms_a: set[int], body: int | None = None, geom: int | None = None) -> bool:
        for c in self.data.contact[: self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            for a, b in ((g1, g2), (g2, g1)):
                if a in geoms_a and ((geom is not None and b == geom)
                                      or (body is not None and self.model.geom_bodyid[b] == body)):
                    return True
        return False

    def _move(self, T_start: np.ndarray, T_end: np.ndarray, seconds: float, ctrl: float,
              shake: bool = False, watch=None) -> bool:
        """Move the hand from T_start to T_end (straight line, fixed orientation) with finger target `ctrl`; False
        when `watch()` returns False at some step."""
        mj = self._mujoco
        steps = max(1, int(seconds / TIMESTEP_S))
        self.data.mocap_quat[self._hand] = _quat_wxyz(T_end[:3, :3])
        for k in range(steps):
            s = (k + 1) / steps
            s = s * s * (3 - 2 * s)  # smooth start and stop
            position = (1 - s) * T_start[:3, 3] + s * T_end[:3, 3]
            if shake:
                t = (k + 1) * TIMESTEP_S
                position = position + SHAKE_AMPLITUDE_M * np.array(
                    [math.sin(2 * math.pi * SHAKE_HZ * t), math.sin(4 * math.pi * SHAKE_HZ * t), 0.0])
            self.data.mocap_pos[self._hand] = position
            self.data.ctrl[:] = ctrl
            mj.mj_step(self.model, self.data)
            if watch is not None and not watch():
                return False
        return True

    def run(self, target: int, T_world_grasp: np.ndarray, width_m: float) -> TrialResult:
        """Approach, close, lift, shake and hold one grasp of object `target` (its index in `objects`)."""
        mj = self._mujoco
        g = self.gripper
        body = self._object_bodies[target]
        self.data.qpos[:] = self._settled
        self.data.qvel[:] = 0.0
        stroke = g.max_opening_m / 2
        open_ctrl = stroke - g.pre_grasp_opening(width_m) / 2  # joint value: how far each finger moved in
        self.data.qpos[self.model.jnt_qposadr[self.model.joint("slideL").id]] = open_ctrl
        self.data.qpos[self.model.jnt_qposadr[self.model.joint("slideR").id]] = open_ctrl
        T_pre = T_world_grasp.copy()
        T_pre[:3, 3] -= g.approach_distance_m * T_world_grasp[:3, 2]
        self._place_hand(T_pre[:3, 3], T_pre[:3, :3])
        mj.mj_forward(self.model, self.data)
        start = self._body_pos(body)
        others = [b for b in self._object_bodies if b != body]

        hit = []

        def approach_clear() -> bool:
            if self._touching(self._hand_geoms, geom=self._table):
                hit.append("table")
            elif any(self._touching(self._hand_geoms, body=b) for b in others):
                hit.append("another object")
            return not hit

        if not approach_clear() or not self._move(T_pre, T_world_grasp, APPROACH_S, open_ctrl, watch=approach_clear):
            return TrialResult("collision", float(self._body_pos(body)[2] - start[2]), hit[0])
        # Nudging the target on the way in is no failure by itself; a grasp that then fails counts as a collision.
        pushed = np.linalg.norm(self._body_pos(body) - start) > PUSH_LIMIT_M
        self._move(T_world_grasp, T_world_grasp, CLOSE_S, stroke)
        held = all(self._touching({self._finger_geoms[s]}, body=body) for s in "LR")
        if not held:
            return TrialResult("collision" if pushed else "miss", float(self._body_pos(body)[2] - start[2]),
                               "pushed the object" if pushed else "")
        T_lift = T_world_grasp.copy()
        T_lift[2, 3] += LIFT_M
        self._move(T_world_grasp, T_lift, LIFT_S, stroke)
        self._move(T_lift, T_lift, SHAKE_S, stroke, shake=True)
        self._move(T_lift, T_lift, HOLD_S, stroke)
        rise = float(self._body_pos(body)[2] - start[2])
        held = all(self._touching({self._finger_geoms[s]}, body=body) for s in "LR")
        if held and rise >= SUCCESS_HEIGHT_M:
            return TrialResult("success", rise)
        return TrialResult("collision" if pushed else "slip", rise, "pushed the object" if pushed else "")
