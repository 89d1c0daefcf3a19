"""Start the sam3d_ros perception node next to a camera driver and a detector/segmenter.

ros2 launch sam3d_ros perception.launch.py camera:=/camera backend:=depth
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    """The node with its YAML, topic remappings under the camera namespace, and the backend choice."""
    default_params = os.path.join(get_package_share_directory("sam3d_ros"), "config", "perception.yaml")
    camera = LaunchConfiguration("camera")
    arguments = [
        DeclareLaunchArgument("camera", default_value="/camera", description="Camera namespace."),
        DeclareLaunchArgument("image", default_value=[camera, "/color/image_raw"], description="Colour image topic."),
        DeclareLaunchArgument("camera_info", default_value=[camera, "/color/camera_info"], description="CameraInfo of the colour image."),
        DeclareLaunchArgument("depth", default_value=[camera, "/aligned_depth_to_color/image_raw"], description="Depth registered to the colour image."),
        DeclareLaunchArgument("masks", default_value="/segmentation/masks", description="Instance label image topic."),
        DeclareLaunchArgument("detections", default_value="/detections", description="vision_msgs/Detection2DArray topic."),
        DeclareLaunchArgument("backend", default_value="depth", description="Reconstruction backend."),
        DeclareLaunchArgument("params_file", default_value=default_params, description="Parameter YAML."),
    ]
    node = Node(
        package="sam3d_ros",
        executable="perception_node",
        name="sam3d_perception",
        output="screen",
        parameters=[LaunchConfiguration("params_file"), {"backend": LaunchConfiguration("backend")}],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("depth", LaunchConfiguration("depth")),
            ("masks", LaunchConfiguration("masks")),
            ("detections", LaunchConfiguration("detections")),
        ],
    )
    return LaunchDescription(arguments + [node])
