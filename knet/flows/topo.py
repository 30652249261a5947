"""`knet topo`: the cluster as a tree (nodes -> bridges -> pods with IPs; services with their
ClusterIPs and endpoints) and as a Graphviz graph.

Both renderings are pure functions of a `ClusterView`, so they are tested without a
cluster; `svg` is `dot -Tsvg` run on the graph text.
"""

from __future__ import annotations

import shutil
import subprocess

from knet.errors import KnetError
from knet.flows.cluster import ClusterView

__all__ = ["dot", "svg", "tree"]

NL = "\\n"   # a line break inside a Graphviz label (dot reads the two characters \\n)


def tree(view: ClusterView) -> str:
    lines = ["cluster"]
    nodes = sorted(view.nodes.values(), key=lambda n: n.name)
    for i, node in enumerate(nodes):
        last_node = i == len(nodes) - 1 and not view.services
        bar = "    " if last_node else "│   "
        lines.append(f"{'└── ' if last_node else '├── '}node {node.name}  eth0 {node.ip}  "
                     f"netns {node.netns}")
        pods = sorted((p for p in view.pods.values() if p.node == node.name),
                      key=lambda p: p.key)
        lines.append(f"{bar}└── cni0 {node.gateway or '?'}  pods {node.pod_cidr}")
        for j, pod in enumerate(pods):
            mark = "└── " if j == len(pods) - 1 else "├── "
            lines.append(f"{bar}    {mark}{pod.key}  {pod.ip or '(no IP)'}  {pod.phase}"
                         + (f"  veth {pod.host_ifname}" if pod.host_ifname else ""))
    services = sorted(view.services.values(), key=lambda s: s.key)
    if services:
        lines.append("└── services")
    for k, svc in enumerate(services):
        mark, bar = ("└── ", "    ") if k == len(services) - 1 else ("├── ", "│   ")
        ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in svc.ports)
        lines.append(f"    {mark}svc {svc.key}  {svc.cluster_ip}  {ports}")
        if not svc.endpoints:
            lines.append(f"    {bar}└── (no endpoints)")
        for m, (ep_ip, ep_pod, ep_node) in enumerate(sorted(svc.endpoints)):
            emark = "└── " if m == len(svc.endpoints) - 1 else "├── "
            where = f"  on {ep_node}" if ep_node else ""
            lines.append(f"    {bar}{emark}{ep_pod + '  ' if ep_pod else ''}{ep_ip}{where}")
    return "\n".join(lines)


def _q(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def dot(view: ClusterView) -> str:
    out = ["digraph knet {", "  rankdir=LR;", "  node [fontname=Helvetica, fontsize=10];",
           '  host [label="host\\nknet0 bridge", shape=box3d];']
    for node in sorted(view.nodes.values(), key=lambda n: n.name):
        nid = f"node_{node.name}"
        out += [f"  subgraph {_q('cluster_' + node.name)} {{",
                f"    label={_q(f'{node.name} ({node.netns})')};",
                f"    {_q(nid + '_eth0')} [label={_q(f'eth0 {node.ip}')}, shape=box];",
                (f"    {_q(nid + '_cni0')} [label={_q(f'cni0 {node.gateway} {node.pod_cidr}')}, "
                 "shape=box];")]
        for pod in sorted((p for p in view.pods.values() if p.node == node.name),
                          key=lambda p: p.key):
            out.append(f"    {_q('pod_' + pod.key)} [label={_q(pod.key + NL + pod.ip)}, "
                       "shape=ellipse];")
            out.append(f"    {_q(nid + '_cni0')} -> {_q('pod_' + pod.key)} [dir=both];")
        out += ["  }", f"  host -> {_q(nid + '_eth0')} [dir=both];",
                f"  {_q(nid + '_eth0')} -> {_q(nid + '_cni0')} [dir=both, style=dashed];"]
    for svc in sorted(view.services.values(), key=lambda s: s.key):
        sid = "svc_" + svc.key
        ports = ",".join(str(p.get("port")) for p in svc.ports)
        out.append(f"  {_q(sid)} [label={_q(f'svc {svc.key}' + NL + f'{svc.cluster_ip}:{ports}')}, "
                   "shape=hexagon, style=filled, fillcolor=lightyellow];")
        for _ip, ep_pod, _node in sorted(svc.endpoints):
            if ep_pod in view.pods:
                out.append(f"  {_q(sid)} -> {_q('pod_' + ep_pod)} [color=blue];")
    out.append("}")
    return "\n".join(out) + "\n"


def svg(view: ClusterView) -> str:
    exe = shutil.which("dot")
    if exe is None:
        raise KnetError("topo --format svg needs Graphviz's 'dot' (apt-get install graphviz); "
                        "--format dot prints the graph text instead")
    r = subprocess.run([exe, "-Tsvg"], input=dot(view), capture_output=True, text=True,
                       timeout=30, check=False)
    if r.returncode != 0:
        raise KnetError(f"dot -Tsvg failed: {r.stderr.strip()}")
    return r.stdout
