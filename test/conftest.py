"""Test-wide ROS 2 environment: DDS stays on loopback, shared memory for images, a domain of this run's own."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Set before anything imports rclpy; child processes (the node under test) inherit them.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(ROOT / "config" / "fastdds_loopback_shm.xml")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 200 + 1))
