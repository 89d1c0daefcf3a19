"""Ranked parallel-jaw grasps on a completed object mesh (object frame), collision-checked against the scene.

Candidates are antipodal pairs of surface samples no wider than the gripper's opening, each tried at several
approach directions about the closing axis. Every candidate gets four scores in [0, 1]:
- friction: how far inside the friction cones (half-angle atan(friction)) the closing line lies at both contacts;
- contact: how flat the surface is under each pad (mean agreement of the surface normals within the pad's radius);
- centre of mass: 1 at the centre of mass, 0 at half the object's largest extent from it;
- robustness: the friction score left when the contacts slide by `ROBUST_SHIFT_M` across the surface and the
  closing line tilts by `ROBUST_TILT_DEG` (the pose error a grasp must survive), and no more than the pre-grasp
  clearance per side allows (1 at `clearance_m`, 0 where the opening leaves none);
plus a small preference for approaching from above. The weighted mean (WEIGHTS) is the grasp's `score`. A mesh that
knows which of its surface a camera saw (`OBSERVED_ATTRIBUTE`, per vertex in [0, 1]: fused meshes) has the scores of
a pair with a contact on surface no view saw (completion: a guess) lowered by up to `UNSEEN_CONTACT_PENALTY`.
Kept candidates are free of collisions at the pre-grasp opening along the whole approach (fingers and palm swept
`approach_distance_m` back along -z) with the support plane (table, below `TABLE_MARGIN_M`), the other objects and
the object itself; an approach from below the table plane is never kept. Grasp frame: see gripper.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import fcl
import numpy as np
import open3d as o3d
import trimesh
from scipy.spatial import cKDTree

from sam3d_ros.geometry.gripper import GripperParams
from sam3d_ros.geometry.transforms import invert_transform, make_transform

N_SURFACE_SAMPLES = 1500  # dense samples: contact flatness and robustness look-ups
N_CONTACT_SAMPLES = 256  # of those, the candidate contacts (pairs among them)
N_APPROACH_ANGLES = 8  # approach directions per contact pair (about the closing axis, 0 .. 180 deg)
MAX_PAIRS = 200  # best contact pairs kept before the approach directions are tried
ROBUST_SHIFT_M = 0.004
ROBUST_TILT_DEG = 5.0
TABLE_MARGIN_M = 0.003
MAX_PAD_SHIFT = 0.8  # contacts may lie up to this fraction of half the pad length toward the fingertips
PAD_SHIFT_PENALTY = 0.5  # contact score lost at the largest shift (less pad on the object)
MIN_SCORE = 0.05
PREFILTER_CHUNK = 128  # candidates point-checked at once before fcl
COLLISION_VOXEL_M = 0.006  # collision models of meshes above COLLISION_MAX_FACES: vertices clustered to this grid
COLLISION_MAX_FACES = 1000
COLLISION_MARGIN_M = 0.004  # the gripper's boxes grow by this on every side against other objects (mesh error)
WEIGHTS = {"friction": 0.3, "contact": 0.2, "centre_of_mass": 0.2, "robustness": 0.2, "approach": 0.1}
DUPLICATE_DISTANCE_M = 0.01
DUPLICATE_ANGLE_DEG = 20.0
OBSERVED_ATTRIBUTE = "observed"  # mesh.vertex_attributes key: 1 where views saw the surface, 0 where it is completion
UNSEEN_CONTACT_PENALTY = 0.5  # score fraction lost by a pair whose less-seen contact lies on unseen surface


@dataclass
class Grasp:
    """One parallel-jaw grasp: pose of the gripper frame (TCP) in the object frame, contact width, score."""

    T_obj_grasp: np.ndarray  # (4, 4) gripper frame -> object frame
    width_m: float  # jaw opening at contact
    score: float  # [0, 1], higher is better

    def contacts_obj(self) -> np.ndarray:
        """(2, 3) the two jaw contacts in the object frame: the TCP moved by half the width along +-y."""
        half_y = self.T_obj_grasp[:3, 1] * (self.width_m / 2)
        return np.stack([self.T_obj_grasp[:3, 3] + half_y, self.T_obj_grasp[:3, 3] - half_y])


@dataclass
class _Obstacle:
    """A mesh in the planned object's frame, as an fcl object and its bounding sphere."""

    collision: fcl.CollisionObject
    centre_obj: np.ndarray
    radius_m: float
    itself: bool = False  # the planned object's own mesh (its errors are covered by the pre-grasp clearance)


def collision_model(mesh: trimesh.Trimesh) -> fcl.BVHModel:
    """fcl model of `mesh`; one above COLLISION_MAX_FACES is first clustered to COLLISION_VOXEL_M (building an fcl
    model costs about 3 us per triangle; the few mm it may move the surface are within the pre-grasp clearance)."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) > COLLISION_MAX_FACES:
        clustered = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices),
                                              o3d.utility.Vector3iVector(faces.astype(np.int32)))
        clustered = clustered.simplify_vertex_clustering(COLLISION_VOXEL_M)
        vertices, faces = np.asarray(clustered.vertices), np.asarray(clustered.triangles, dtype=np.int64)
    model = fcl.BVHModel()
    model.beginModel(len(vertices), len(faces))
    model.addSubModel(vertices, faces)
    model.endModel()
    return model


class SceneMeshes:
    """Collision models of a scene's meshes, built once and reused for every object planned in it."""

    def __init__(self, meshes: list[trimesh.Trimesh], T_ref_objs: list[np.ndarray],
                 models: list[fcl.BVHModel | None] | None = None) -> None:
        """`models`: per mesh, its `collision_model` when the caller kept it (None: built here)."""
        self.meshes = meshes
        self.T_ref_objs = [np.asarray(T, dtype=float) for T in T_ref_objs]
        models = models or [None] * len(meshes)
        self._models = [model if model is not None else collision_model(m) for m, model in zip(meshes, models, strict=True)]
        self._spheres = [(m.bounding_sphere.primitive.center, m.bounding_sphere.primitive.radius) if len(m.faces)
                         else (np.zeros(3), 0.0) for m in meshes]

    @property
    def models(self) -> list[fcl.BVHModel]:
        """Each mesh's collision model (for a caller to keep and pass again while the mesh stays)."""
        return list(self._models)

    @classmethod
    def build(cls, meshes: list[trimesh.Trimesh], T_ref_objs: list[np.ndarray],
              models: list[fcl.BVHModel | None] | None = None) -> tuple["SceneMeshes | None", str]:
        """(the scene, "") or (None, the reason) when a mesh cannot be made a collision model: that costs the grasps
        of the scene's objects, never the objects."""
        try:
            return cls(meshes, T_ref_objs, models), ""
        except Exception as exc:  # noqa: BLE001 - whatever fcl or trimesh raise on a degenerate mesh
            return None, f"no collision models of the frame's meshes: {type(exc).__name__}: {exc}"

    def plan_or_reason(
        self, planner: "GraspPlanner", index: int, support_plane_ref: np.ndarray | None
    ) -> tuple[list["Grasp"], str]:
        """(`plan`'s grasps, "") or ([], the reason) when planning mesh `index` failed: one object's grasps never
        cost the others'."""
        try:
            return self.plan(planner, index, support_plane_ref), ""
        except Exception as exc:  # noqa: BLE001 - one object's grasps never cost the others
            return [], f"{type(exc).__name__}: {exc}"

    def obstacles_in(self, index: int) -> list[_Obstacle]:
        """All meshes (the object `index` itself included) in the frame of object `index`."""
        T_obj_ref = invert_transform(self.T_ref_objs[index])
        obstacles = []
        for other, (model, T_ref_other, (centre, radius)) in enumerate(zip(self._models, self.T_ref_objs, self._spheres)):
            T_obj_other = T_obj_ref @ T_ref_other
            collision = fcl.CollisionObject(model, fcl.Transform(T_obj_other[:3, :3], T_obj_other[:3, 3]))
            obstacles.append(_Obstacle(collision, T_obj_other[:3, :3] @ centre + T_obj_other[:3, 3], float(radius),
                                       other == index))
        return obstacles

    def plan(self, planner: "GraspPlanner", index: int, support_plane_ref: np.ndarray | None) -> list["Grasp"]:
        """Grasps of mesh `index` in its own object frame, checked against all meshes and the support plane (given
        in the reference frame, unit normal pointing up, away from the table)."""
        plane_obj = None
        if support_plane_ref is not None:
            plane_obj = transform_plane(invert_transform(self.T_ref_objs[index]), support_plane_ref)
        return planner.plan(self.meshes[index], plane_obj, self.obstacles_in(index))


def _gripper_boxes(gripper: GripperParams, opening_m: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(centre, size) in the gripper frame of both fingers and the palm, swept back along -z over the approach."""
    tip_z = gripper.pad_length_m / 2
    sweep = gripper.approach_distance_m
    finger_len = gripper.finger_length_m + sweep
    finger_y = opening_m / 2 + gripper.finger_thickness_m / 2
    finger_size = np.array([gripper.finger_width_m, gripper.finger_thickness_m, finger_len])
    palm_len = gripper.palm_height_m + sweep
    palm_z = tip_z - gripper.finger_length_m - palm_len / 2
    return [
        (np.array([0.0, -finger_y, tip_z - finger_len / 2]), finger_size),
        (np.array([0.0, finger_y, tip_z - finger_len / 2]), finger_size),
        (np.array([0.0, 0.0, palm_z]), np.array([gripper.palm_depth_m, gripper.palm_width_m, palm_len])),
    ]


_CORNER_SIGNS = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])


class GraspPlanner:
    """Antipodal grasp candidates for one gripper; deterministic for a given mesh."""

    def __init__(self, gripper: GripperParams | None = None, max_grasps: int = 10, seed: int = 0) -> None:
        self.gripper = (gripper or GripperParams()).validate()
        self.max_grasps = int(max_grasps)
        self.seed = seed

    def plan_scene(
        self, meshes: list[trimesh.Trimesh], T_ref_objs: list[np.ndarray], support_plane_ref: np.ndarray | None
    ) -> list[list[Grasp]]:
        """Grasps of every mesh (each in its own object frame), each checked against all meshes and the plane;
        `T_ref_objs` place the meshes in the frame the support plane is given in (see SceneMeshes.plan)."""
        scene = SceneMeshes(meshes, T_ref_objs)
        return [scene.plan(self, index, support_plane_ref) for index in range(len(meshes))]

    def plan(
        self, mesh_obj: trimesh.Trimesh, support_plane_obj: np.ndarray | None = None,
        obstacles: list[_Obstacle] | None = None,
    ) -> list[Grasp]:
        """Best-first grasps of `mesh_obj`; `obstacles` default to the mesh itself (use SceneMeshes for more)."""
        g = self.gripper
        if len(mesh_obj.faces) == 0 or mesh_obj.area <= 0:
            return []
        if obstacles is None:
            obstacles = SceneMeshes([mesh_obj], [np.eye(4)]).obstacles_in(0)
        rng = np.random.default_rng(self.seed)
        points, face_index = trimesh.sample.sample_surface(mesh_obj, N_SURFACE_SAMPLES, seed=rng)
        normals = mesh_obj.face_normals[face_index]
        tree = cKDTree(points)
        # Antipodal pairs among the contact samples.
        contact = rng.choice(len(points), size=min(N_CONTACT_SAMPLES, len(points)), replace=False)
        flatness = np.zeros(len(points))
        flatness[contact] = _flatness(tree, points[contact], normals[contact], normals, g.pad_width_m / 2)
        i, j = np.triu_indices(len(contact), k=1)
        i, j = contact[i], contact[j]
        d = points[j] - points[i]
        width = np.linalg.norm(d, axis=1)
        ok = (width >= g.min_opening_m) & (width <= g.max_opening_m - 1e-3)
        i, j, d, width = i[ok], j[ok], d[ok], width[ok]
        u = d / width[:, None]
        cone = math.atan(g.friction)
        angle = np.maximum(_angle(-np.einsum("ij,ij->i", normals[i], u)), _angle(np.einsum("ij,ij->i", normals[j], u)))
        friction = 1.0 - angle / cone
        ok = friction > 0
        i, j, u, width, friction = i[ok], j[ok], u[ok], width[ok], friction[ok]
        if len(i) == 0:
            return []
        contact_score = np.minimum(flatness[i], flatness[j])
        centres = (points[i] + points[j]) / 2
        com = mesh_obj.center_mass if mesh_obj.is_volume else mesh_obj.centroid
        reach = max(float(np.max(mesh_obj.extents)) / 2, 1e-3)
        com_score = np.clip(1.0 - np.linalg.norm(centres - com, axis=1) / reach, 0.0, 1.0)
        seen = _observed_samples(mesh_obj, face_index)
        certainty = np.ones(len(i)) if seen is None else 1.0 - UNSEEN_CONTACT_PENALTY * (1.0 - np.minimum(seen[i], seen[j]))
        pair_score = (WEIGHTS["friction"] * friction + WEIGHTS["contact"] * contact_score
                      + WEIGHTS["centre_of_mass"] * com_score) * certainty
        # Robustness (the costliest score) only for the pairs that can still make the cut.
        best = np.argsort(-pair_score)[:2 * MAX_PAIRS]
        # A pose error larger than the pre-grasp clearance per side puts a finger onto the object on the way in.
        side_clearance = (np.minimum(width[best] + 2 * g.clearance_m, g.max_opening_m) - width[best]) / 2
        robust = np.minimum(_robustness(tree, normals, points[i[best]], points[j[best]], u[best], cone),
                            np.clip(side_clearance / g.clearance_m, 0.0, 1.0))
        pair_score = pair_score[best] + WEIGHTS["robustness"] * robust * certainty[best]
        keep = np.argsort(-pair_score)[:MAX_PAIRS]
        best = best[keep]
        u, width, centres, pair_score = u[best], width[best], centres[best], pair_score[keep]

        # Approach directions about each closing axis.
        up = None
        if support_plane_obj is not None:
            up = np.asarray(support_plane_obj[:3], dtype=float)
            up = up / np.linalg.norm(up)
        R = _grasp_rotations(u, up)  # (P, A, 3, 3)
        n_pairs, n_angles = R.shape[:2]
        z = R[:, :, :, 2]
        approach = np.full((n_pairs, n_angles), 0.5) if up is None else (1.0 - z @ up) / 2
        score = pair_score[:, None] + WEIGHTS["approach"] * approach
        allowed = np.ones_like(score, dtype=bool) if up is None else (z @ up <= 1e-6)
        widths = np.broadcast_to(width[:, None], score.shape)
        positions = np.broadcast_to(centres[:, None, :], (n_pairs, n_angles, 3))
        if support_plane_obj is not None:
            # Contacts near the table (thin objects lying flat) are taken nearer the fingertips: the hand stands back
            # along -z until the swept gripper clears the table, as long as the contact stays on the pad.
            shift = self._table_shift(R, positions, widths, support_plane_obj, up)
            allowed &= shift <= MAX_PAD_SHIFT * g.pad_length_m / 2
            shift = np.where(np.isfinite(shift), shift, 0.0)
            positions = positions - shift[..., None] * z
            score = score - WEIGHTS["contact"] * PAD_SHIFT_PENALTY * shift / (g.pad_length_m / 2)
        allowed &= score >= MIN_SCORE
        flat = np.flatnonzero(allowed.ravel())
        order = flat[np.argsort(-score.ravel()[flat], kind="stable")]
        R, positions, widths, score = R.reshape(-1, 3, 3), positions.reshape(-1, 3), widths.ravel(), score.ravel()

        kept: list[Grasp] = []
        for start in range(0, len(order), PREFILTER_CHUNK):
            chunk = order[start:start + PREFILTER_CHUNK]
            # Cheap first: candidates whose swept gripper holds one of the object's own surface samples collide.
            chunk = chunk[self._clear_of_points(R[chunk], positions[chunk], widths[chunk], points[contact])]
            for k in chunk:
                if _duplicate(kept, positions[k], R[k]):
                    continue
                T = make_transform(R[k], positions[k])
                if self._collides(T, float(widths[k]), obstacles):
                    continue
                kept.append(Grasp(T, float(widths[k]), float(np.clip(score[k], 0.0, 1.0))))
                if len(kept) >= self.max_grasps:
                    return kept
        return kept

    def _clear_of_points(self, R: np.ndarray, positions: np.ndarray, widths: np.ndarray,
                         points_obj: np.ndarray) -> np.ndarray:
        """(C,) whether no point lies inside the swept fingers or palm at each candidate's pre-grasp opening."""
        g = self.gripper
        local = np.matmul(points_obj[None, :, :] - positions[:, None, :], R)  # gripper frames (R^T d per point)
        x, y, z = local[..., 0], local[..., 1], local[..., 2]
        half_opening = np.minimum(widths + 2 * g.clearance_m, g.max_opening_m)[:, None] / 2
        tip = g.pad_length_m / 2
        root = tip - g.finger_length_m
        in_fingers = ((np.abs(x) < g.finger_width_m / 2) & (np.abs(y) > half_opening)
                      & (np.abs(y) < half_opening + g.finger_thickness_m) & (z < tip) & (z > root - g.approach_distance_m))
        in_palm = ((np.abs(x) < g.palm_depth_m / 2) & (np.abs(y) < g.palm_width_m / 2) & (z < root)
                   & (z > root - g.palm_height_m - g.approach_distance_m))
        return ~(in_fingers | in_palm).any(axis=1)

    def _table_shift(self, R: np.ndarray, positions: np.ndarray, widths: np.ndarray, plane: np.ndarray,
                     up: np.ndarray) -> np.ndarray:
        """(P, A) how far (m) the gripper must stand back along -z so that every corner of the swept gripper at the
        widest pre-grasp opening stays TABLE_MARGIN_M above the plane: 0 when it already does, inf when standing
        back does not raise it (approaches from the side)."""
        offset = float(plane[3]) / float(np.linalg.norm(plane[:3]))
        lowest = np.full(widths.shape, np.inf)
        for centre, size in _gripper_boxes(self.gripper, self.gripper.max_opening_m):
            corners = centre + _CORNER_SIGNS * size  # (8, 3) gripper frame
            heights = (up @ R) @ corners.T + (positions @ up)[..., None] + offset  # (P, A, 8)
            lowest = np.minimum(lowest, heights.min(axis=2))
        missing = TABLE_MARGIN_M - lowest
        rise = -(R[..., :, 2] @ up)  # height gained per metre stood back along -z
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(missing <= 0, 0.0, np.where(rise > 1e-3, missing / rise, np.inf))
        return shift

    def _collides(self, T_obj_grasp: np.ndarray, width_m: float, obstacles: list[_Obstacle]) -> bool:
        """Whether the swept gripper at the pre-grasp opening touches any obstacle (fcl)."""
        opening = self.gripper.pre_grasp_opening(width_m)
        request = fcl.CollisionRequest()
        for centre, size in _gripper_boxes(self.gripper, opening):
            centre_obj = T_obj_grasp[:3, :3] @ centre + T_obj_grasp[:3, 3]
            transform = fcl.Transform(T_obj_grasp[:3, :3], centre_obj)
            boxes: dict[bool, fcl.CollisionObject] = {}
            for obstacle in obstacles:
                margin = 0.0 if obstacle.itself else COLLISION_MARGIN_M
                radius = float(np.linalg.norm(size + 2 * margin)) / 2
                if np.linalg.norm(centre_obj - obstacle.centre_obj) > radius + obstacle.radius_m:
                    continue
                if obstacle.itself not in boxes:
                    boxes[obstacle.itself] = fcl.CollisionObject(fcl.Box(*(size + 2 * margin)), transform)
                if fcl.collide(boxes[obstacle.itself], obstacle.collision, request, fcl.CollisionResult()):
                    return True
        return False


def _observed_samples(mesh: trimesh.Trimesh, face_index: np.ndarray) -> np.ndarray | None:
    """Per surface sample (on faces `face_index`), how much of it views saw: the mean of its face's vertices'
    `OBSERVED_ATTRIBUTE`, or None when the mesh does not say."""
    observed = mesh.vertex_attributes.get(OBSERVED_ATTRIBUTE)
    if observed is None:
        return None
    observed = np.clip(np.asarray(observed, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if len(observed) != len(mesh.vertices):
        return None
    return observed[np.asarray(mesh.faces)[face_index]].mean(axis=1)


def transform_plane(T_a_b: np.ndarray, plane_b: np.ndarray) -> np.ndarray:
    """A plane (a, b, c, d: n.p + d = 0) given in frame b, expressed in frame a."""
    plane_b = np.asarray(plane_b, dtype=float)
    n_a = T_a_b[:3, :3] @ plane_b[:3]
    return np.append(n_a, plane_b[3] - n_a @ T_a_b[:3, 3])


def _angle(cosine: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(cosine, -1.0, 1.0))


def _flatness(tree: cKDTree, points: np.ndarray, normals: np.ndarray, all_normals: np.ndarray,
              radius_m: float) -> np.ndarray:
    """Per point, 1 where the sample normals (`all_normals`, of the tree's points) within the pad radius agree
    with its normal, 0 where they differ by 45 deg or more on average."""
    neighbours = tree.query_ball_point(points, radius_m)
    counts = np.array([len(n) for n in neighbours])
    rows = np.repeat(np.arange(len(points)), counts)
    cols = np.concatenate(neighbours).astype(int)
    dots = np.einsum("ij,ij->i", normals[rows], all_normals[cols])
    mean_dot = np.bincount(rows, dots, minlength=len(points)) / np.maximum(counts, 1)
    cos45 = math.cos(math.radians(45))
    return np.clip((mean_dot - cos45) / (1 - cos45), 0.0, 1.0)


def _robustness(tree: cKDTree, normals: np.ndarray, p: np.ndarray, q: np.ndarray,
                u: np.ndarray, cone: float) -> np.ndarray:
    """Worst friction score after shifting both contacts by ROBUST_SHIFT_M across the closing line (4 ways) with
    the closing line tilted by ROBUST_TILT_DEG."""
    helper = np.where(np.abs(u[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(u, e1)
    tilt = math.radians(ROBUST_TILT_DEG)
    worst = np.ones(len(u))
    for e in (e1, -e1, e2, -e2):
        _, ip = tree.query(p + ROBUST_SHIFT_M * e)
        _, iq = tree.query(q + ROBUST_SHIFT_M * e)
        angle = np.maximum(_angle(-np.einsum("ij,ij->i", normals[ip], u)), _angle(np.einsum("ij,ij->i", normals[iq], u)))
        worst = np.minimum(worst, 1.0 - (angle + tilt) / cone)
    return np.clip(worst, 0.0, 1.0)


def _grasp_rotations(u: np.ndarray, up: np.ndarray | None) -> np.ndarray:
    """(P, A, 3, 3) rotations [x y z] with y = u and z turned about y from the most downward direction."""
    down = -up if up is not None else np.array([0.0, 0.0, -1.0])
    z0 = down - (u @ down)[:, None] * u
    weak = np.linalg.norm(z0, axis=1) < 1e-3  # closing axis vertical: any horizontal start
    if weak.any():
        other = np.where(np.abs(u[weak, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
        z0[weak] = np.cross(u[weak], other)
    z0 /= np.linalg.norm(z0, axis=1, keepdims=True)
    x0 = np.cross(u, z0)
    angles = np.concatenate([[0.0], np.repeat(np.arange(1, N_APPROACH_ANGLES // 2 + 1), 2)
                             * np.tile([1, -1], N_APPROACH_ANGLES // 2)])[:N_APPROACH_ANGLES] * (np.pi / N_APPROACH_ANGLES)
    c, s = np.cos(angles), np.sin(angles)
    z = c[None, :, None] * z0[:, None, :] + s[None, :, None] * x0[:, None, :]
    y = np.broadcast_to(u[:, None, :], z.shape)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=-1)


def _duplicate(kept: list[Grasp], position: np.ndarray, R: np.ndarray) -> bool:
    """Whether a kept grasp is within DUPLICATE_DISTANCE_M and DUPLICATE_ANGLE_DEG of approach direction."""
    cos_limit = math.cos(math.radians(DUPLICATE_ANGLE_DEG))
    for grasp in kept:
        if (np.linalg.norm(grasp.T_obj_grasp[:3, 3] - position) < DUPLICATE_DISTANCE_M
                and grasp.T_obj_grasp[:3, 2] @ R[:, 2] > cos_limit):
            return True
    return False
