"""The package builds as a ROS 2 ament_python package with colcon (what a robot's workspace does)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _colcon(*args, cwd):
    colcon = Path(sys.executable).parent / "colcon"  # colcon-core's console script in this environment
    return subprocess.run([str(colcon), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_colcon_sees_only_this_package_and_installs_it(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "sam3d_ros").symlink_to(ROOT)
    listed = _colcon("list", "--names-only", cwd=workspace)
    assert listed.returncode == 0, listed.stderr
    # interfaces/ holds vision_msgs and tf2_msgs for machines without ROS: COLCON_IGNORE keeps them out of a workspace.
    assert listed.stdout.split() == ["sam3d_ros"]
    built = _colcon("build", "--packages-select", "sam3d_ros", cwd=workspace)
    assert built.returncode == 0, built.stdout + built.stderr
    install = workspace / "install" / "sam3d_ros"
    for relative in (
        "lib/sam3d_ros/perception_node",  # ros2 run sam3d_ros perception_node
        "lib/sam3d_ros/sam3d-ros",
        "share/sam3d_ros/package.xml",
        "share/sam3d_ros/launch/perception.launch.py",
        "share/sam3d_ros/config/perception.yaml",
        "share/sam3d_ros/config/fastdds_robot_shm.xml",
        "share/sam3d_ros/models/README.md",
        "share/ament_index/resource_index/packages/sam3d_ros",
    ):
        assert (install / relative).is_file(), f"colcon did not install {relative}"
    # Every stage subpackage is installed, with the node's module (the entry point imports it).
    installed = sorted((install / "lib").glob("python3*/site-packages/sam3d_ros"))
    assert installed, "colcon installed no sam3d_ros Python package"
    for module in ("ros/perception_node.py", "perception_node.py", "tools/cli.py", "sam3d/worker.py",
                   "reconstruction/backends/factory.py", "tracking/tracker.py", "geometry/transforms.py"):
        assert (installed[0] / module).is_file(), f"colcon did not install sam3d_ros/{module}"
