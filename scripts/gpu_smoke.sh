#!/usr/bin/env bash
# GPU smoke test of the sam3d backend with the real SAM 3D Objects weights (see models/README.md).
#
# On the GPU machine, with the sam-3d-objects conda environment activated (or SAM3D_WORKER_PYTHON naming its python)
# and the gated weights in $SAM3D_REPO/checkpoints/hf:
#     SAM3D_REPO=~/sam-3d-objects scripts/gpu_smoke.sh [--device cuda:0] [--out DIR] [--objects 3]
# It starts a worker with --preflight, runs `sam3d-ros reconstruct --backend sam3d` on the real Middlebury frame and
# on a rendered YCB scene with this side's python (SAM3D_ROS_PYTHON, default: python3 on PATH, e.g. the venv of
# scripts/env.sh), and prints time per object and per stage, peak GPU memory and centre/F1 against ground truth.
# Without a GPU, the weights or the environment it prints one line saying what is missing and exits 1.
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "${SAM3D_ROS_PYTHON:-python3}" -m sam3d_ros.tools.gpu_smoke "$@"
