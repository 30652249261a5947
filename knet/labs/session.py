"""Where labs live and the cluster they run on.

Catalog: labs are the directories labs/NN-topic/ of this repository (or $KNET_LABS_DIR),
each with a lab.yaml; a lab is named by its number ("7", "07") or its directory name.
Cluster: a lab brings up its own cluster with `knet up` in its state dir and always
`knet down`s it (Ctrl-C included: SIGINT is ignored while tearing down), or reuses a running
one (`--reuse`); `check --all` brings up one cluster for every lab to save time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import knet
from knet.cluster.state import ClusterRecord
from knet.errors import KnetError
from knet.labs.kube import Kube
from knet.labs.model import Lab, load_lab


def labs_root() -> Path:
    env = os.environ.get("KNET_LABS_DIR")
    return Path(env) if env else Path(knet.__file__).resolve().parent.parent / "labs"


@dataclass(frozen=True)
class LabEntry:
    number: str
    dir: Path

    @property
    def namespace(self) -> str:
        return f"lab-{self.number}"

    def load(self) -> Lab:
        return load_lab(self.dir / "lab.yaml")


def catalog(root: Path | None = None) -> list[LabEntry]:
    root = root or labs_root()
    if not root.is_dir():
        raise KnetError(f"no labs directory at {root}; set KNET_LABS_DIR to the repository's "
                        "labs/ directory")
    return [LabEntry(d.name.split("-", 1)[0], d) for d in sorted(root.iterdir())
            if (d / "lab.yaml").is_file() and d.name[:2].isdigit()]


def find(name: str, root: Path | None = None) -> LabEntry:
    labs = catalog(root)
    for e in labs:
        if name in (e.number, e.dir.name, e.dir.name.split("-", 1)[-1]) or (
                name.isdigit() and int(name) == int(e.number)):
            return e
    listing = "\n".join(f"  {e.number}  {e.dir.name.split('-', 1)[-1]}" for e in labs)
    raise KnetError(f"no lab {name!r}; the labs are:\n{listing}\n(run one with "
                    "'knet lab run NN')")


def _knet(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "knet.cli.main", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def refuse_if_up(state_dir: Path, *, who: str = "a lab") -> None:
    """A KnetError with the way out if a cluster runs in state_dir (or in the default state
    dir: knet runs one cluster per host, its bridge and API address are fixed)."""
    from knet.cluster.state import DEFAULT_STATE_DIR

    for d in dict.fromkeys((state_dir, DEFAULT_STATE_DIR)):
        _refuse_one(d, who)


def _refuse_one(state_dir: Path, who: str) -> None:
    rec = ClusterRecord.load(state_dir)
    if rec is not None and rec.running():
        way = (f"or run the lab in it with --reuse{_sd(state_dir)} (in the lab's own "
               "namespace)"
               if who == "a lab" else f"then run {who} again")
        raise KnetError(f"a cluster is already up in {state_dir}, and {who} brings up its own "
                        "(knet runs one cluster per host): stop it with 'knet down"
                        f"{_sd(state_dir)}', {way}")


def _sd(state_dir: Path) -> str:
    from knet.cluster.state import DEFAULT_STATE_DIR

    return "" if state_dir == DEFAULT_STATE_DIR else f" --state-dir {state_dir}"


@contextmanager
def lab_cluster(state_dir: Path, *, nodes: int, env: dict[str, str], reuse: bool,
                say: Callable[[str], None], keep: bool = False,
                who: str = "a lab", up: Sequence[str] = ()) -> Iterator[Kube]:
    """A cluster for labs and the demo: the running one (reuse) or a fresh one, taken down
    at the end (Ctrl-C and failures included) unless keep."""
    if reuse:
        yield Kube.for_state_dir(state_dir)
        return
    refuse_if_up(state_dir, who=who)
    say(f"starting a {nodes}-node cluster in {state_dir} (knet up{''.join(' ' + a for a in up)})"
        + (f" with {' '.join(f'{k}={v}' for k, v in sorted(env.items()))}" if env else ""))
    try:
        r = _knet("up", "--nodes", str(nodes), "--state-dir", str(state_dir), *up, env=env,
                  timeout=300)
        if r.returncode != 0:
            raise KnetError(f"knet up failed: {(r.stderr or r.stdout).strip()[-600:]}")
        yield Kube.for_state_dir(state_dir)
        if keep:
            say(f"cluster kept: export KUBECONFIG={state_dir / 'kubeconfig'}; "
                f"'knet down{_sd(state_dir)}' removes it")
            return
    except BaseException:
        keep = False
        raise
    finally:
        if not keep:
            _down(state_dir, say)


def _down(state_dir: Path, say: Callable[[str], None]) -> None:
    """knet down, deaf to Ctrl-C (a second one must not leave half a cluster behind)."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        say("taking the cluster down (knet down)")
        _knet("down", "--state-dir", str(state_dir), env={}, timeout=300)
    finally:
        signal.signal(signal.SIGINT, old)
