#!/usr/bin/env bash
# Set up (idempotent) and run the demo: the real node over ROS 2 topics on a rendered YCB scene.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/scripts/setup.sh"
cd "$root"
exec python -m sam3d_ros.tools.demo "$@"
