# Environment for running sam3d_ros on this machine kind (no ROS install): a ROS 2 distribution's venv plus DDS kept
# on loopback. Source it: `. scripts/env.sh` (Kilted), `. scripts/env.sh --distro jazzy` or `ROS_DISTRO=jazzy .
# scripts/env.sh` (Jazzy; built by scripts/setup.sh with the same switch). On a robot, source your ROS
# distribution's setup.bash instead and keep your own DDS settings.
_sam3d_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$_sam3d_root/scripts/distro.sh" || return $?
if [ ! -f "$_sam3d_venv/bin/activate" ]; then
  echo "[sam3d_ros] no environment for ROS 2 $_sam3d_distro at $_sam3d_venv: run scripts/setup.sh --distro $_sam3d_distro" >&2
  return 1 2>/dev/null || exit 1
fi
. "$_sam3d_venv/bin/activate"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# FastDDS multicasts discovery out of the external interface unless told to stay on localhost.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Shared memory for big best-effort images, UDP only on 127.0.0.1 (see config/fastdds_loopback_shm.xml). Fast DDS 3
# (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE (and warns that the other name is deprecated), Fast DDS 2 (Jazzy,
# Humble) only FASTRTPS_DEFAULT_PROFILES_FILE.
unset FASTDDS_DEFAULT_PROFILES_FILE FASTRTPS_DEFAULT_PROFILES_FILE
if [ "$_sam3d_distro" = kilted ]; then _sam3d_profile_var=FASTDDS_DEFAULT_PROFILES_FILE
else _sam3d_profile_var=FASTRTPS_DEFAULT_PROFILES_FILE; fi
export "$_sam3d_profile_var=$_sam3d_root/config/fastdds_loopback_shm.xml"
# Concurrent runs must not see each other: a domain per shell unless one was chosen.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 200) + 1 ))}"
