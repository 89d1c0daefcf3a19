"""Reconstruction backends: every method implements `ReconstructionBackend`."""

from sam3d_ros.backends.base import ReconstructionBackend, ReconstructionError, create_backend

__all__ = ["ReconstructionBackend", "ReconstructionError", "create_backend"]
