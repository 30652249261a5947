#!/usr/bin/env bash
# Entry point of the knet lab container. No arguments: print how to use it and start a shell.
# `demo [ARGS]` is short for `knet demo [ARGS]`; anything else is run as given (`knet demo`,
# `knet up`, `bash -lc ...`). The container's own network namespace is the emulated cluster's
# host, so it needs --privileged but no network (--network none works).
set -euo pipefail
mkdir -p /run/netns /var/lib/knet

usage() {
    local kubectl_line="kubectl ($(kubectl version --client 2>/dev/null | head -1)) is installed; knet get/apply/describe/logs/exec/... run it with the cluster's kubeconfig"
    command -v kubectl >/dev/null 2>&1 ||
        kubectl_line="no kubectl in this image: mount one at /usr/local/bin/kubectl; the Python 'kubernetes' client is installed"
    cat <<USAGE
knet lab container: Kubernetes networking, emulated for real inside this container.

  knet demo                  a 2-node cluster, Services, DNS, affinity, a traced request (~1 min)
  knet up --nodes 2          start a cluster and keep it; then:
    knet get pods -o wide      (kubectl-compatible: apply, get, describe, logs, exec, scale, rollout)
    export KUBECONFIG=\$(knet kubeconfig | tail -1); kubectl get nodes
    knet status                processes, nodes, pods per node
  knet lab list | run NN | check --all     the self-checking labs (in /opt/knet/labs)
  knet down                  stop the cluster and remove everything it made
  knet --help                every command

  $kubectl_line.
  Tools: curl, dig, ping, nc, tcpdump, ip (iproute2), nft. Everything vanishes with the container.
  Run it as: docker run --rm -it --privileged knet [knet demo | COMMAND]
USAGE
}

if [ "$#" -eq 0 ]; then
    usage
    exec bash
fi
if [ "$1" = "demo" ]; then
    shift
    exec knet demo "$@"
fi
exec "$@"
