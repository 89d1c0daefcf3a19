#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on one ROS 2 distribution: `scripts/test.sh [--distro kilted|jazzy]
# [pytest arguments]` (or ROS_DISTRO=jazzy; default kilted). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_sam3d_root="$root"
. "$root/scripts/distro.sh"
shift "$_sam3d_distro_shift"
# setup.sh and env.sh read the distribution from ROS_DISTRO (exported above); the pytest arguments are not theirs.
. "$root/scripts/setup.sh"
cd "$root"
echo "[test] ROS 2 $ROS_DISTRO (rclpy $(python -c 'import importlib.metadata as m; print(m.version("ros-rclpy"))'), $VIRTUAL_ENV)"
exec python -m pytest "$@"
