"""Tracking: association across frames, ICP pose tracking, the reconstruction scheduler and the mesh cache.
No ROS.
"""
