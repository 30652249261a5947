"""What every pod worker of one agent shares: the node it runs on, the dataplane, the
runtime, the API client, and small services (object lookups, events, the clock, options).
Passed in explicitly, never global.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.clientbase import Client
from knet.dataplane.base import Dataplane
from knet.kubelet.satoken import ApiAccess
from knet.runtime.base import Runtime

Obj = dict[str, Any]


@dataclass(frozen=True)
class KubeletOptions:
    backoff_initial: float = 10.0     # CrashLoopBackOff: 10 s doubling ...
    backoff_max: float = 300.0        # ... to 5 min
    backoff_reset: float = 600.0      # a container that ran 10 min starts over
    status_debounce: float = 0.05


@dataclass
class NodeContext:
    node_name: str
    node_netns: str
    host_ip: str
    pods_root: Path
    client: Client
    dataplane: Dataplane
    runtime: Runtime
    lookup: Callable[[str, str, str], Awaitable[Obj | None]]
    service_env: Callable[[str], dict[str, str]]
    event: Callable[[Obj, str, str, str], None]
    api_access: ApiAccess | None = None   # the API server as pods reach it (URL, CA)
    options: KubeletOptions = field(default_factory=KubeletOptions)
    clock: Callable[[], float] = time.time
