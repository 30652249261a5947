"""The node agent: registers its Node, renews its Lease, makes the pods bound to it real
(dataplane sandbox, then containers through the runtime), probes them, restarts them with
back-off, reports their status, serves their logs and exec, and runs the node's proxy.
"""
