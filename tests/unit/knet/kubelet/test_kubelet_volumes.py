"""knet/kubelet/volumes.py: a claim's PV directory (made on first use, kept after the pod),
unbound claims wait, hostPath types, subPath made and confined, downwardAPI files."""

from __future__ import annotations

from pathlib import Path

import pytest

from knet.errors import KnetError
from knet.kubelet import containers as cspec
from knet.kubelet.volumes import VolumeNotReady, downward_files, host_dir, prepare_sub_path


def pod(*volumes: dict) -> dict:
    return {"metadata": {"name": "web-0", "namespace": "default", "uid": "u1",
                         "labels": {"app": "nginx", "tier": "fe"}},
            "spec": {"nodeName": "node-1", "volumes": list(volumes),
                     "containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": {"podIP": "10.244.1.5"}}


def store(objs: dict):
    async def lookup(resource: str, namespace: str, name: str):
        return objs.get((resource, namespace, name))
    return lookup


def claim(phase: str = "Bound", volume: str | None = "pvc-1") -> dict:
    return {"spec": {"volumeName": volume} if volume else {}, "status": {"phase": phase}}


async def test_claim_resolves_to_its_volume_directory(tmp_path: Path) -> None:
    data = tmp_path / "volumes" / "node-1" / "pvc-1_default_www-web-0"
    lookup = store({("persistentvolumeclaims", "default", "www-web-0"): claim(),
                    ("persistentvolumes", "", "pvc-1"): {"spec": {"hostPath": {
                        "path": str(data), "type": "DirectoryOrCreate"}}}})
    vol = {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}
    got = await host_dir(pod(vol), vol, tmp_path / "pod", lookup=lookup)
    assert got == data and data.is_dir()
    (data / "index.html").write_text("web-0\n")
    mounts = await cspec.materialize_volumes(pod(vol), tmp_path / "pod", lookup=lookup)
    assert mounts == {"www": data}
    assert (data / "index.html").read_text() == "web-0\n"      # same data for a new pod


async def test_unbound_or_missing_claim_waits(tmp_path: Path) -> None:
    vol = {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}
    with pytest.raises(VolumeNotReady, match='persistentvolumeclaim "www-web-0" not found'):
        await host_dir(pod(vol), vol, tmp_path, lookup=store({}))
    pending = store({("persistentvolumeclaims", "default", "www-web-0"): claim("Pending", None)})
    with pytest.raises(VolumeNotReady, match="is not bound yet"):
        await host_dir(pod(vol), vol, tmp_path, lookup=pending)


async def test_host_path_types(tmp_path: Path) -> None:
    made = {"name": "h", "hostPath": {"path": str(tmp_path / "new"), "type": "DirectoryOrCreate"}}
    assert (await host_dir(pod(made), made, tmp_path, lookup=store({}))).is_dir()
    must = {"name": "h", "hostPath": {"path": str(tmp_path / "absent"), "type": "Directory"}}
    with pytest.raises(KnetError, match="hostPath type check failed: .* is not a directory"):
        await host_dir(pod(must), must, tmp_path, lookup=store({}))
    rel = {"name": "h", "hostPath": {"path": "relative/x"}}
    with pytest.raises(KnetError, match="must be an absolute path"):
        await host_dir(pod(rel), rel, tmp_path, lookup=store({}))


def test_sub_path_is_made_and_confined(tmp_path: Path) -> None:
    assert prepare_sub_path(tmp_path, "a/b") == (tmp_path / "a" / "b").resolve()
    assert (tmp_path / "a" / "b").is_dir()
    with pytest.raises(KnetError, match="leaves its volume"):
        prepare_sub_path(tmp_path, "../escape")
    mounts = cspec.mounts_for({"volumeMounts": [{"name": "v", "mountPath": "/data",
                                                 "subPath": "sub"}]}, {"v": tmp_path})
    assert mounts[0].host_path == str((tmp_path / "sub").resolve())


async def test_downward_api_files(tmp_path: Path) -> None:
    vol = {"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c",
                                             "resource": "limits.memory"}}]}}
    assert downward_files(pod(vol), vol["downwardAPI"]["items"]) == {
        "labels": 'app="nginx"\ntier="fe"', "name": "web-0", "tier": "fe", "mem": str(64 * 2**20)}
    path = await host_dir(pod(vol), vol, tmp_path, lookup=store({}))
    assert (path / "name").read_text() == "web-0"


async def test_host_path_into_the_state_dir_or_root_is_refused_naming_the_way_out(
        tmp_path: Path) -> None:
    """A hostPath is a path of this machine: knet's state dir (keys, tokens), /root and /home
    stay out of every pod (FailedMount), even through a symlink; the node's local-path
    volumes under the state dir stay usable, and nothing is made on a refusal."""
    state = tmp_path / "state"
    pod_dir = state / "pods" / "node-1" / "uid1"
    pod_dir.mkdir(parents=True)
    (tmp_path / "sneaky").symlink_to(state)
    for path in (str(state), str(state / "ca"), "/root/.kube", "/var/lib/knet",
                 str(tmp_path / "sneaky" / "token")):
        vol = {"name": "h", "hostPath": {"path": path, "type": "DirectoryOrCreate"}}
        with pytest.raises(VolumeNotReady, match="no pod may mount it.*PersistentVolumeClaim"):
            await host_dir(pod(vol), vol, pod_dir, lookup=store({}))
    assert not (state / "ca").exists()
    ok = state / "volumes" / "node-1" / "pvc-1_default_www-web-0"
    vol = {"name": "h", "hostPath": {"path": str(ok), "type": "DirectoryOrCreate"}}
    assert await host_dir(pod(vol), vol, pod_dir, lookup=store({})) == ok
    bad_pv = {("persistentvolumeclaims", "default", "c"): claim(),
              ("persistentvolumes", "", "pvc-1"): {"spec": {"local": {"path": str(state)}}}}
    vol = {"name": "www", "persistentVolumeClaim": {"claimName": "c"}}
    with pytest.raises(VolumeNotReady, match="state directory"):
        await host_dir(pod(vol), vol, pod_dir, lookup=store(bad_pv))
