"""The policy model of a running cluster, for the CLI (`knet netpol explain|probe`): one list
each of NetworkPolicies, Pods and Namespaces through the kubeconfig `knet up` wrote, compiled
by the same code the node enforcers run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from knet.errors import KnetError
from knet.policy.model import Model, compile_model, namespace_info, pod_info

__all__ = ["load_model"]


async def load_model(state_dir: Path) -> Model:
    from control.client import HttpClient

    kubeconfig = state_dir / "kubeconfig"
    if not kubeconfig.exists():
        raise KnetError(f"no cluster at {state_dir}: {kubeconfig} is missing; run 'knet up' "
                        "(or pass --state-dir)")
    client = HttpClient.from_kubeconfig(kubeconfig)
    try:
        pols, pods, nss = await asyncio.gather(*(client.list(r) for r in (
            "networkpolicies", "pods", "namespaces")))
    except OSError as exc:
        raise KnetError(f"cluster at {state_dir}: API server unreachable ({exc}); is it up? "
                        "('knet status')") from None
    finally:
        await client.close()
    infos = [p for p in (pod_info(o) for o in pods.items) if p is not None]
    return compile_model(pols.items, infos, [namespace_info(o) for o in nss.items])
