"""knet's error hierarchy (node side). Messages name the object, the fact and the way out.

    KnetError
    ├── DataplaneError      netlink / namespace failures, translated inside knet.dataplane
    │   ├── KernelObjectExists   a link, netns or route that must be new exists already
    │   ├── KernelObjectMissing  a netns, node or link that must exist does not
    │   └── Exhausted       an address pool (pod CIDR) has no free address
    ├── RuntimeError_       container processes (start, exec, stop)
    └── UsageError          bad input from the command line

(The API's AlreadyExists/NotFound are control.errors' and carry HTTP statuses; these name kernel
objects, so the two never meet in one `except`.)
"""

from __future__ import annotations


class KnetError(Exception):
    """Base of every error knet shows to a user as one line."""


class DataplaneError(KnetError):
    pass


class KernelObjectExists(DataplaneError):
    pass


class KernelObjectMissing(DataplaneError):
    pass


class Exhausted(DataplaneError):
    pass


class RuntimeError_(KnetError):
    """A container could not be started, exec'd or stopped."""


class UsageError(KnetError):
    pass
