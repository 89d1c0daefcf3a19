"""Start the sam3d_ros perception node next to a camera driver and a detector/segmenter (and RViz if asked).

ros2 launch sam3d_ros perception.launch.py camera:=/camera backend:=depth target_frame:=base_link rviz:=true
ros2 launch sam3d_ros perception.launch.py image_transport:=compressed depth_image_transport:=compressedDepth  # a bag
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _perception_node(context: LaunchContext) -> list[Node]:
    """The node, with the parameter file and, after it, only the parameter arguments the user gave."""
    from sam3d_ros.ros.launch_arguments import PARAMETER_ARGUMENTS, parameter_overrides

    given = parameter_overrides({name: LaunchConfiguration(name).perform(context) for name in PARAMETER_ARGUMENTS})
    return [Node(
        package="sam3d_ros",
        executable="perception_node",
        name="sam3d_perception",
        output="screen",
        parameters=[LaunchConfiguration("params_file")] + ([given] if given else []),
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("depth", LaunchConfiguration("depth")),
            ("masks", LaunchConfiguration("masks")),
            ("detections", LaunchConfiguration("detections")),
        ],
    )]


def generate_launch_description() -> LaunchDescription:
    """The node with its YAML, topic remappings under the camera namespace, and the choices most often changed
    (overriding the YAML only when given)."""
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
        # Named like node parameters: given, they override params_file; left '' the file's value holds.
        DeclareLaunchArgument("backend", default_value="", description="Reconstruction backend: depth or sam3d ('' = as params_file says)."),
        DeclareLaunchArgument("sam3d_worker", default_value="", description="SAM 3D worker endpoint(s) (backend sam3d; '' = as params_file says)."),
        DeclareLaunchArgument("models_dir", default_value="", description="Folder of model files ('' = as params_file says)."),
        DeclareLaunchArgument("sam_checkpoint", default_value="", description="Segment Anything checkpoint for masks from boxes ('' = as params_file says)."),
        DeclareLaunchArgument("target_frame", default_value="", description="Output frame, e.g. base_link ('' = as params_file says)."),
        DeclareLaunchArgument("image_transport", default_value="", description="Colour transport: raw or compressed (<image>/compressed; '' = as params_file says)."),
        DeclareLaunchArgument("depth_image_transport", default_value="", description="Depth transport: raw, compressedDepth or compressed ('' = as params_file says)."),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz with config/sam3d.rviz."),
    ]
    node = OpaqueFunction(function=_perception_node)
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="sam3d_rviz",
        arguments=["-d", os.path.join(share, "config", "sam3d.rviz")],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(arguments + [node, rviz])
