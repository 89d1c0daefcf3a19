"""Start the sam3d_ros perception node next to a camera driver and a detector/segmenter (and RViz if asked).

ros2 launch sam3d_ros perception.launch.py camera:=/camera backend:=depth target_frame:=base_link rviz:=true
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description() -> LaunchDescription:
    """The node with its YAML, topic remappings under the camera namespace, and the choices most often changed."""
    share = get_package_share_directory("sam3d_ros")
    camera = LaunchConfiguration("camera")
    arguments = [
        DeclareLaunchArgument("camera", default_value="/camera", description="Camera namespace."),
        DeclareLaunchArgument("image", default_value=[camera, "/color/image_raw"], description="Colour image topic."),
        DeclareLaunchArgument("camera_info", default_value=[camera, "/color/camera_info"], description="CameraInfo of the colour image."),
        DeclareLaunchArgument("depth", default_value=[camera, "/aligned_depth_to_color/image_raw"], description="Depth registered to the colour image."),
        DeclareLaunchArgument("masks", default_value="/segmentation/masks", description="Instance label image topic."),
        DeclareLaunchArgument("detections", default_value="/detections", description="vision_msgs/Detection2DArray topic."),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "perception.yaml"), description="Parameter YAML."),
        DeclareLaunchArgument("backend", default_value="depth", description="Reconstruction backend: depth or sam3d."),
        DeclareLaunchArgument("sam3d_worker", default_value="tcp://127.0.0.1:5555", description="SAM 3D worker endpoint(s) (backend sam3d)."),
        DeclareLaunchArgument("models_dir", default_value="", description="Folder of model files ('' = the package's models/)."),
        DeclareLaunchArgument("sam_checkpoint", default_value="", description="Segment Anything checkpoint for masks from boxes."),
        DeclareLaunchArgument("target_frame", default_value="", description="Output frame, e.g. base_link ('' = camera optical frame)."),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/sam3d.rviz."),
    ]
    # Launch arguments override the YAML; each is typed like the node's parameter (tested in test_parameters.py).
    overrides = {
        "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
        "sam3d_worker": ParameterValue(LaunchConfiguration("sam3d_worker"), value_type=str),
        "models_dir": ParameterValue(LaunchConfiguration("models_dir"), value_type=str),
        "sam_checkpoint": ParameterValue(LaunchConfiguration("sam_checkpoint"), value_type=str),
        "target_frame": ParameterValue(LaunchConfiguration("target_frame"), value_type=str),
    }
    node = Node(
        package="sam3d_ros",
        executable="perception_node",
        name="sam3d_perception",
        output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("depth", LaunchConfiguration("depth")),
            ("masks", LaunchConfiguration("masks")),
            ("detections", LaunchConfiguration("detections")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="sam3d_rviz",
        arguments=["-d", os.path.join(share, "config", "sam3d.rviz")],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(arguments + [node, rviz])
