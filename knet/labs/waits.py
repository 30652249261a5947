"""The `wait` step: poll the cluster (through kubectl) until a condition holds or a timeout
passes; the timeout message says what was awaited and the last thing seen."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from knet.errors import KnetError
from knet.labs.kube import Kube, is_ready, live
from knet.labs.model import Wait

SAFE = {"len": len, "any": any, "all": all, "sum": sum, "set": set, "sorted": sorted,
        "min": min, "max": max, "int": int, "str": str, "ready": is_ready}


def evaluate(expr: str, obj: Any) -> bool:
    """A lab's expression on `kubectl get -o json` output (`obj`); labs are trusted files of
    this repository, and the names available are only `obj` and a few pure builtins."""
    return bool(eval(expr, {"__builtins__": {}, **SAFE, "obj": obj}))


def wait(kube: Kube, w: Wait, sub: Callable[[str], str]) -> None:
    if w.rollout:
        r = kube.run("rollout", "status", sub(w.rollout), f"--timeout={int(w.timeout)}s",
                     timeout=w.timeout + 10)
        if r.returncode != 0:
            raise KnetError(f"rollout of {sub(w.rollout)} not complete within {w.timeout:g}s: "
                            f"{(r.stderr or r.stdout).strip()[-300:]}")
        return
    deadline = time.monotonic() + w.timeout
    last = ""
    while True:
        ok, last = _poll(kube, w, sub)
        if ok:
            return
        if time.monotonic() >= deadline:
            raise KnetError(f"timed out after {w.timeout:g}s; last seen: {last}")
        time.sleep(0.3)


def _poll(kube: Kube, w: Wait, sub: Callable[[str], str]) -> tuple[bool, str]:
    if w.pods:
        pods = live(kube.get_json("pods", "-l", sub(w.pods))["items"])
        ready = [p for p in pods if is_ready(p)]
        return (len(ready) == w.ready == len(pods),
                f"{len(ready)} Ready of {len(pods)} pod(s) matching {sub(w.pods)!r}")
    if w.gone:
        r = kube.run("get", *sub(w.gone).split(), "-o", "name")
        gone = (r.returncode != 0 and "NotFound" in r.stderr) or (
            r.returncode == 0 and not r.stdout.strip())
        return gone, (r.stdout or r.stderr).strip()[-200:]
    assert w.get and w.expr
    r = kube.run("get", *sub(w.get).split(), "-o", "json")
    if r.returncode != 0:
        return False, r.stderr.strip()[-200:]
    obj = json.loads(r.stdout)
    try:
        return evaluate(sub(w.expr), obj), f"{sub(w.expr)} is false"
    except Exception as exc:  # noqa: BLE001 - a lab's expression error is the lab's message
        return False, f"{sub(w.expr)} raised {type(exc).__name__}: {exc}"
