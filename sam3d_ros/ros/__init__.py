"""ROS 2 adapters: the node, message conversions, input sync, TF publishing and lookup, the transform buffer,
diagnostics counters, publisher sequence gaps, and the ROS client the tools use.
"""
