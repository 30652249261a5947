"""A knet cluster on this host: its state directory, the processes it runs (one control plane;
per node an agent and a kube-proxy) and the lifecycle commands `knet up`, `knet down`,
`knet status`.
"""
