"""Reconstruction: the backend interface and its backends, the per-frame pipeline, depth refinement,
segmentation (label images, detection boxes) and the results' file formats. No ROS.
"""
