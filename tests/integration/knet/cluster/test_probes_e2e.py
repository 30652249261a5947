"""Probes on a real cluster: a slow starter guarded by a startupProbe gets failureThreshold x
periodSeconds to start (knet's kubelet used to kill it at the first failed probe)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from clusterkit import Cluster

# The marker's name is unique per run: a container's /tmp may be the host's (then a marker
# left by an earlier run would pass the probe at once).
SLOW_STARTER = """
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "sleep 3; touch MARKER; sleep 3600"]
    startupProbe:
      exec: {command: ["test", "-f", "MARKER"]}
      periodSeconds: 1
      failureThreshold: 10
"""


def test_startup_probe_allows_failure_threshold_times_period(cluster: Cluster) -> None:
    marker = f"/tmp/knet-test-started-{uuid.uuid4().hex}"
    cluster.kubectl("apply", "-f", "-", input=SLOW_STARTER.replace("MARKER", marker))

    def started() -> dict | None:
        st = (cluster.get("pod", "slow")["status"].get("containerStatuses") or [{}])[0]
        return st if st.get("started") and st.get("ready") else None
    status = cluster.wait("slow to pass its startup probe", started, timeout=60)
    assert status["restartCount"] == 0
    time.sleep(1)
    events = cluster.kubectl("get", "events", "--field-selector",
                             "involvedObject.name=slow").stdout
    assert "Startup probe failed" in events and "Killing" not in events
    cluster.kubectl("delete", "pod", "slow", "--wait=true")
    Path(marker).unlink(missing_ok=True)
