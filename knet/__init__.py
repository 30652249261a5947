"""knet: Kubernetes networking emulated for real on one Linux host.

The node side (dataplane, runtime, kubelet, proxy, dns, flows) and the CLI. It uses
`control.models` and `control.client`; `control` never imports `knet`.
"""

__version__ = "0.1.0"
