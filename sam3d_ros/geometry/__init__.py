"""Geometry: camera model, rigid transforms, the frame and result types, support plane, footprints,
primitives (lofted solids, superquadrics), mesh simplification, Open3D calls made reproducible (`open3d_threads`).
numpy/open3d/trimesh only, no ROS.
"""
