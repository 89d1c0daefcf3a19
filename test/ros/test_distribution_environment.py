"""The set-up's choice of ROS 2 distribution (scripts/distro.sh, sourced by setup.sh, env.sh and test.sh) and the
requirement files behind each environment."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Kilted wheels with no Jazzy counterpart of the same name (Kilted split ament_cmake_ros; Jazzy's is one package).
KILTED_ONLY = {"ament-cmake-ros-core"}
#: Jazzy needs these to generate interfaces (its ament_cmake_ros finds them at configure time); Kilted does not.
JAZZY_ONLY = {"ament-cmake-gmock", "ament-cmake-gtest", "ament-cmake-pytest"}


def _select(*args: str, ros_distro: str | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", **({"ROS_DISTRO": ros_distro} if ros_distro else {})}
    script = f'_sam3d_root={ROOT}; . {ROOT}/scripts/distro.sh "$@" || exit $?; ' \
             'echo "$_sam3d_distro $_sam3d_venv $_sam3d_requirements $_sam3d_distro_shift $ROS_DISTRO"'
    return subprocess.run(["bash", "-c", script, "select", *args], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("args, ros_distro, expected", [
    ((), None, f"kilted {ROOT}/.venv {ROOT}/requirements.txt 0 kilted"),
    (("--distro", "jazzy", "-q"), None, f"jazzy {ROOT}/.venv-jazzy {ROOT}/requirements-jazzy.txt 2 jazzy"),
    ((), "jazzy", f"jazzy {ROOT}/.venv-jazzy {ROOT}/requirements-jazzy.txt 0 jazzy"),
    (("--distro", "kilted"), "jazzy", f"kilted {ROOT}/.venv {ROOT}/requirements.txt 2 kilted"),  # the flag wins
    (("test/ros",), None, f"kilted {ROOT}/.venv {ROOT}/requirements.txt 0 kilted"),  # pytest arguments are not its
])
def test_the_flag_or_ros_distro_picks_the_environment(args, ros_distro, expected):
    result = _select(*args, ros_distro=ros_distro)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_distribution_without_an_environment_here_is_one_line_and_status_2():
    result = _select("--distro", "humble")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "'humble' has no environment here (kilted or jazzy" in result.stderr


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_each_distribution_lists_only_ros_wheels_and_shares_the_rest():
    """The non-ROS pins live once, in requirements-common.txt, included by each distribution's file."""
    for name in ("requirements.txt", "requirements-jazzy.txt"):
        lines = _requirements(name)
        assert "-r requirements-common.txt" in lines, name
        assert [line for line in lines if not line.startswith(("ros-", "-r "))] == [], name
    assert not any(line.startswith("ros-") for line in _requirements("requirements-common.txt"))


def test_jazzy_pins_the_jazzy_release_of_every_ros_wheel_kilted_has():
    kilted = {re.split("[=<>~]", line)[0][len("ros-"):] for line in _requirements("requirements.txt") if line.startswith("ros-")}
    jazzy_lines = [line for line in _requirements("requirements-jazzy.txt") if line.startswith("ros-")]
    assert all(re.fullmatch(r"ros-jazzy-[a-z0-9-]+==[0-9.]+", line) for line in jazzy_lines), jazzy_lines
    jazzy = {line.split("==")[0][len("ros-jazzy-"):] for line in jazzy_lines}
    assert jazzy - JAZZY_ONLY == kilted - KILTED_ONLY
