"""A knet cluster on this host: its state directory, the processes it runs (one control plane,
one agent per node) and the lifecycle commands `knet up`, `knet down`, `knet status`.
"""
