"""A throwaway rootful podman for the container tests (the recipe of docs/container.md).

Everything lives in one temporary directory (storage, runroot, libpod tmp, containers.conf with
runc and rlimits the host allows), so removing that directory, after unmounting what podman left
mounted under it, removes all of it. No registry is reachable: the base image is a debootstrap'd
Debian bookworm (cached as a tarball in CACHE_DIR between runs) plus the host's extra CA
certificates, since HTTPS from inside goes through an intercepting proxy on these machines.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGES = ["podman", "uidmap", "fuse-overlayfs", "slirp4netns", "runc", "debootstrap"]
CACHE_DIR = Path("/var/cache/knet-test")
SUITE = "bookworm"
DEBIAN_IMAGE = f"localhost/knet-test-debian:{SUITE}"
BASE_IMAGE = f"localhost/knet-test-base:{SUITE}"
CA_DIR = Path("/usr/local/share/ca-certificates")
CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
events_logger = "none"
"""


def ensure_packages() -> None:
    """apt-get install what podman needs, only if missing (about a minute the first time)."""
    missing = [p for p in PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True,
        check=False).stdout != "install ok installed"]
    if not missing:
        return
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)


def debian_mirror() -> str:
    """The Debian mirror apt uses here (deb822 .sources or one-line .list), for debootstrap."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for f in files:
        if f.suffix not in (".list", ".sources") or not f.is_file():
            continue
        text = f.read_text()
        for m in re.finditer(r"^URIs:\s*(\S+)\s*\nSuites:\s*([^\n]*)", text, re.MULTILINE):
            if SUITE in m.group(2).split():
                return m.group(1)
        one_line = re.search(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{SUITE}\s", text, re.MULTILINE)
        if one_line:
            return one_line.group(1)
    return "http://deb.debian.org/debian"


class Podman:
    """podman with all its state under `root`; `run` returns the finished process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for d in ("storage", "runroot", "tmp"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "containers.conf").write_text(CONF)
        self.env = os.environ | {"CONTAINERS_CONF": str(root / "containers.conf"),
                                 "TMPDIR": str(root / "tmp")}

    def argv(self, *args: str) -> list[str]:
        return ["podman", "--root", str(self.root / "storage"), "--runroot",
                str(self.root / "runroot"), "--tmpdir", str(self.root / "tmp"), *args]

    def run(self, *args: str, timeout: float = 600, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                           timeout=timeout, input=input, check=False,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
        return p

    def import_debian(self) -> None:
        """Import the cached debootstrap tarball (made on first use) as DEBIAN_IMAGE."""
        mirror = debian_mirror()
        tarball = CACHE_DIR / f"debian-{SUITE}-minbase-{re.sub(r'[^a-z0-9]+', '_', mirror)}.tar"
        if not tarball.exists():
            rootfs = self.root / "rootfs"
            subprocess.run(["debootstrap", "--variant=minbase", "--include=ca-certificates",
                            SUITE, str(rootfs), mirror], check=True, timeout=900,
                           stdout=subprocess.DEVNULL)
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            part = tarball.with_suffix(f".{os.getpid()}.part")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(part), "."], check=True)
            part.rename(tarball)
            shutil.rmtree(rootfs)
        self.run("import", "--change", 'CMD ["bash"]', str(tarball), DEBIAN_IMAGE)

    def build_base(self) -> None:
        """BASE_IMAGE = DEBIAN_IMAGE + the host's extra CA certificates (for pip over HTTPS)."""
        ctx = self.root / "base-context"
        (ctx / "certs").mkdir(parents=True, exist_ok=True)
        for crt in CA_DIR.glob("*.crt") if CA_DIR.is_dir() else []:
            shutil.copy(crt, ctx / "certs" / crt.name)
        (ctx / "Containerfile").write_text(
            f"FROM {DEBIAN_IMAGE}\nCOPY certs/ {CA_DIR}/\nRUN update-ca-certificates\n")
        self.run("build", "--pull=never", "--network", "none", "-t", BASE_IMAGE, str(ctx))

    def image_size(self, image: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout)

    def destroy(self) -> None:
        """Remove every container and image, unmount what is left under root, delete root."""
        self.run("rm", "-af", "-t", "0", check=False, timeout=120)
        self.run("rmi", "-af", check=False, timeout=120)
        for mnt in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def host_state() -> dict[str, str]:
    """What podman could leave on the host: firewall rules, netns files and mounts."""
    state: dict[str, str] = {}
    for name, argv in (("nft", ["nft", "list", "ruleset"]), ("iptables", ["iptables-save"]),
                       ("ip6tables", ["ip6tables-save"])):
        if shutil.which(argv[0]):
            out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
            out = re.sub(r"counter packets \d+ bytes \d+|\[\d+:\d+\]", "", out)
            state[name] = "\n".join(line for line in out.splitlines()
                                    if not line.startswith("#"))
    netns = Path("/run/netns")
    state["netns"] = " ".join(sorted(os.listdir(netns))) if netns.is_dir() else ""
    with open("/proc/self/mountinfo") as f:
        state["netns mounts"] = "\n".join(sorted(
            line.split()[4] for line in f if "netns" in line.split()[4]))
    return state


def make_podman() -> Podman:
    ensure_packages()
    root = Path(tempfile.mkdtemp(prefix="knet-container-", dir="/var/tmp"))
    return Podman(root)


class Timer:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0
