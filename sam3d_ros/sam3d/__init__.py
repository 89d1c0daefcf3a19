"""The SAM 3D Objects worker side: the worker process, its wire format, the model's frame conventions and a
ground-truth stand-in model. Imports with numpy, pyzmq and msgpack only (it runs in SAM 3D's own environment).
"""
