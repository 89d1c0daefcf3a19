"""Test-wide ROS 2 environment: DDS stays on loopback, shared memory for images, a domain of this run's own; and
which ROS 2 distribution is under test (`ros_distro`)."""
import os
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ros_distribution() -> str:
    """The ROS 2 distribution under test: from the version of the rclpy wheel here (7.x Jazzy, 9.x Kilted; the
    environment scripts/setup.sh built for it), else ROS_DISTRO, which a ROS install's setup.bash sets."""
    try:
        major = int(metadata.version("ros-rclpy").split(".")[0])
    except metadata.PackageNotFoundError:
        return os.environ.get("ROS_DISTRO", "unknown")
    return {3: "humble", 7: "jazzy", 9: "kilted"}.get(major, f"rclpy {major}.x")


def fastdds_profile_variable(distribution: str) -> str:
    """The variable naming the Fast DDS XML profile: Fast DDS 3 (Kilted) reads FASTDDS_DEFAULT_PROFILES_FILE (and warns
    that the other name is deprecated), Fast DDS 2 (Jazzy, Humble) only FASTRTPS_DEFAULT_PROFILES_FILE."""
    return "FASTRTPS_DEFAULT_PROFILES_FILE" if distribution in ("humble", "jazzy") else "FASTDDS_DEFAULT_PROFILES_FILE"


# Set before anything imports rclpy; child processes (the node under test) inherit them.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
os.environ.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
os.environ[fastdds_profile_variable(ros_distribution())] = str(ROOT / "config" / "fastdds_loopback_shm.xml")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 200 + 1))


@pytest.fixture(scope="session")
def ros_distro() -> str:
    """ros_distribution(), for tests whose expected behaviour depends on the distribution."""
    return ros_distribution()


@pytest.fixture(scope="session")
def fastdds_profile_env(ros_distro) -> str:
    """The name of the variable that points this distribution's Fast DDS at its XML profile."""
    return fastdds_profile_variable(ros_distro)
