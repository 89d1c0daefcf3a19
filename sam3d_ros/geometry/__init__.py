"""Geometry: camera model, rigid transforms, the frame and result types, support plane, footprints,
primitives (lofted solids, superquadrics), mesh simplification. numpy/open3d/trimesh only, no ROS.
"""
