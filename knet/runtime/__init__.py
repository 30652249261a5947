"""Containers as processes inside a pod's namespaces (see base.py for the API).

Kept import-free on purpose: the per-container shim (shim.py) runs with `python -S -I`
and imports only the small stdlib-only modules of this package.
"""
