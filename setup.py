"""ament_python package sam3d_ros (colcon build on a robot; `pip install -e .` on a machine without ROS)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "sam3d_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*")),
        ("share/" + package_name + "/models", glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="sam3d_ros maintainers",
    maintainer_email="maintainers@sam3d-ros.dev",
    description="Whole-object meshes and metric 6-DoF poses from a ROS 2 camera stream.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "perception_node = sam3d_ros.ros.perception_node:main",
            "sam3d-ros = sam3d_ros.tools.cli:main",
            # The worker alone: runs in the model's environment with numpy, pyzmq and msgpack only.
            "sam3d-ros-worker = sam3d_ros.sam3d.worker:main",
        ],
    },
)
