"""sam3d_ros: whole-object meshes and metric 6-DoF poses from a ROS 2 camera stream."""

__version__ = "0.1.0"
