"""The postStart lifecycle hook as the kubelet runs it: right after the container started,
before it counts as running (it shows ContainerCreating meanwhile). `exec` runs in the
container, `httpGet` is sent to the pod (from the node, like an httpGet probe), `sleep` waits.
A failure is worded as the kubelet's handler runner words it (`Exec lifecycle hook ([sh -c
exit 1]) for Container "c" in Pod "p_default(uid)" failed - error: ..., message: "..."`), so
the runner can record `FailedPostStartHook` and kill the container.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from knet.kubelet.probes import ExecFn, http_check, resolve_port

__all__ = ["run_post_start"]

Obj = dict[str, Any]
_HOOK_TIMEOUT = 30.0      # the kubelet gives exec hooks no timeout; knet bounds them


def _pod_ref(pod: Obj) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md['namespace']}({md.get('uid', '')})"


def _go_list(argv: list[str]) -> str:
    return "[" + " ".join(argv) + "]"


async def run_post_start(hook: Obj, pod: Obj, container: Obj, *, netns: str | None,
                         pod_ip: str, exec_fn: ExecFn) -> str | None:
    """Run the hook; None when it succeeded, else the kubelet's message."""
    name = container["name"]
    if "sleep" in hook:
        await asyncio.sleep(float((hook["sleep"] or {}).get("seconds", 0)))
        return None
    if "exec" in hook:
        argv = [str(a) for a in (hook["exec"] or {}).get("command") or []]
        try:
            code, out = await exec_fn(argv, _HOOK_TIMEOUT)
            error = "" if code == 0 else f"command '{' '.join(argv)}' exited with {code}: "
        except TimeoutError:
            error, out = f"command '{' '.join(argv)}' timed out after {_HOOK_TIMEOUT:g}s", b""
        except Exception as exc:  # noqa: BLE001 - the runtime's reason, as the hook's failure
            error, out = str(exc), b""
        if not error:
            return None
        text = json.dumps(out.decode(errors="replace"))      # Go's %q
        return (f"Exec lifecycle hook ({_go_list(argv)}) for Container \"{name}\" in Pod "
                f"\"{_pod_ref(pod)}\" failed - error: {error}, message: {text}")
    if "httpGet" in hook:
        h = hook["httpGet"] or {}
        path = h.get("path", "/")
        try:
            check = http_check(netns=netns, host=h.get("host") or pod_ip,
                               port=resolve_port(h.get("port"), container), path=path,
                               timeout=_HOOK_TIMEOUT, headers=h.get("httpHeaders"),
                               scheme=h.get("scheme", "HTTP"))
            ok, why = await check()
        except ValueError as exc:
            ok, why = False, str(exc)
        if ok:
            return None
        return (f"HTTP lifecycle hook ({path}) for Container \"{name}\" in Pod "
                f"\"{_pod_ref(pod)}\" failed - error: {why}")
    return (f"Lifecycle hook for Container \"{name}\" in Pod \"{_pod_ref(pod)}\" failed - "
            "error: no handler: give exec, httpGet or sleep")
