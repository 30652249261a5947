#!/usr/bin/env bash
# Installs what knet needs on a fresh Debian/Ubuntu machine (as root): the system tools the
# labs and tests use, then knet itself (editable) with its test extra. Safe to re-run: it only
# installs what is missing. The Dockerfile runs this same script, so the two cannot drift.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
pkgs=(iproute2 util-linux procps curl wget dnsutils netcat-openbsd iputils-ping tcpdump etcd-server dnsmasq dnsperf
      iperf3 wrk haproxy nginx libnginx-mod-stream nftables graphviz libpcap0.8
      containernetworking-plugins)
# programs the built-in images run (knet/runtime/images/_catalog.py): the perl image (the pi
# Job's bignum needs Debian's newer Math::BigInt), the redis image, porter's TLS certificate
pkgs+=(perl libmath-bigint-perl redis-server redis-tools openssl)
command -v "$py" >/dev/null 2>&1 || pkgs+=(python3)
"$py" -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip python3-venv)
# kubectl: keep the one the machine has; else Debian's (older, but speaks the same API)
command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "knet: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # nginx, haproxy, dnsmasq, etcd and redis are tools for the images, benchmarks and tests:
    # don't let their packages start services on the host (the standard policy-rc.d guard)
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
extra=()
if "$py" -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['stdlib'], 'EXTERNALLY-MANAGED')))"; then
    extra+=(--break-system-packages)
fi
# pip installs only what is missing; with everything present this takes a few seconds.
"$py" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${extra[@]}" \
    -e "$here[test]"
