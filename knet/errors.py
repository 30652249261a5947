"""knet's error hierarchy (node side). Messages name the object, the fact and the way out.

    KnetError
    ├── DataplaneError      netlink / namespace failures, translated inside knet.dataplane
    │   ├── AlreadyExists
    │   ├── NotFound
    │   └── Exhausted       an address pool (pod CIDR) has no free address
    ├── RuntimeError_       container processes (start, exec, stop)
    └── UsageError          bad input from the command line
"""

from __future__ import annotations


class KnetError(Exception):
    """Base of every error knet shows to a user as one line."""


class DataplaneError(KnetError):
    pass


class AlreadyExists(DataplaneError):
    pass


class NotFound(DataplaneError):
    pass


class Exhausted(DataplaneError):
    pass


class RuntimeError_(KnetError):
    """A container could not be started, exec'd or stopped."""


class UsageError(KnetError):
    pass
