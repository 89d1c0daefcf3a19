"""`python -m sam3d_ros.perception_node` still starts the node, which lives in `sam3d_ros/ros/perception_node.py`."""
from sam3d_ros.ros.perception_node import main

if __name__ == "__main__":
    raise SystemExit(main())
