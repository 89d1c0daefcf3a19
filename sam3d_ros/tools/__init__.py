"""Tools: the `sam3d-ros` command line and what only measuring needs (eval, eval-tracking, bench, bench-node, the
demo, the synthetic renderer).
"""
