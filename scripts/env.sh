# Environment for running sam3d_ros on this machine kind (no ROS install): the venv plus DDS kept on loopback.
# Source it. On a robot, source your ROS distribution's setup.bash instead and keep your own DDS settings.
_sam3d_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$_sam3d_root/.venv/bin/activate"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# FastDDS multicasts discovery out of the external interface unless told to stay on localhost.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Shared memory for big best-effort images, UDP only on 127.0.0.1 (see config/fastdds_loopback_shm.xml).
export FASTDDS_DEFAULT_PROFILES_FILE="$_sam3d_root/config/fastdds_loopback_shm.xml"
# Concurrent runs must not see each other: a domain per shell unless one was chosen.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 200) + 1 ))}"
