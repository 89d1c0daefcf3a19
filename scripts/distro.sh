# Which ROS 2 distribution's environment the scripts use, sourced by setup.sh, env.sh and test.sh:
# `--distro NAME` as the first arguments of the calling script, else $ROS_DISTRO, else kilted. Each distribution has
# its own venv, requirements file, build folder and set-up stamps, so both can sit side by side in one checkout.
# Sets _sam3d_distro, _sam3d_venv, _sam3d_requirements, _sam3d_build; exports ROS_DISTRO (as a ROS install's
# setup.bash does). Sets _sam3d_distro_shift to the number of arguments it consumed (0 or 2).
_sam3d_distro_shift=0
if [ "${1-}" = "--distro" ]; then
  _sam3d_distro="${2-}"
  _sam3d_distro_shift=2
else
  _sam3d_distro="${ROS_DISTRO:-kilted}"
fi
case "$_sam3d_distro" in
  kilted) _sam3d_venv="$_sam3d_root/.venv"; _sam3d_requirements="$_sam3d_root/requirements.txt"
          _sam3d_build="$_sam3d_root/build" ;;
  jazzy)  _sam3d_venv="$_sam3d_root/.venv-jazzy"; _sam3d_requirements="$_sam3d_root/requirements-jazzy.txt"
          _sam3d_build="$_sam3d_root/build/jazzy" ;;
  *) echo "[sam3d_ros] ROS distribution '$_sam3d_distro' has no environment here (kilted or jazzy;" \
          "humble has no wheels on the package registry): use --distro kilted|jazzy or ROS_DISTRO" >&2
     return 2 2>/dev/null || exit 2 ;;
esac
export ROS_DISTRO="$_sam3d_distro"
