"""The only code in knet that touches netlink (pyroute2) and namespaces.

Everything else talks to the `Dataplane` protocol; a fake twin serves unit tests.
"""
