"""The only code in knet that touches netlink (pyroute2) and namespaces.

Everything else talks to the `Dataplane` protocol (base.py: the calls, NodeSpec, NodeInfo,
PodNet). Roles: `core.RecordedDataplane` owns the semantics (validation, names.py, ipam.py,
the record in state.py); a `Kernel` (kernel.py) makes and removes the objects: netlink.py on
the real kernel (`NetlinkDataplane`), fake.py in memory (`FakeDataplane`, for unit tests);
one contract suite runs against both. aioiproute.py adapts pyroute2 (uvloop, batches);
nsutil.py wraps setns/unshare/mount; sandbox.py is `knet sandbox`.
"""
