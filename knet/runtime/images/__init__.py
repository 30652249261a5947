"""Built-in images: container image references mapped to real programs shipped in knet, so
Kubernetes tutorial YAML runs unchanged (knet runs no registry and pulls nothing).

The API the kubelet calls::

    from knet.runtime.images import resolve, ImageNotFound
    argv = resolve(container["image"], container.get("command"), container.get("args"))

`resolve(image, command, args) -> list[str]` is the argv to exec, with Kubernetes semantics:
`command` replaces the image's ENTRYPOINT and `args` its CMD (no command and no args: the
image's ENTRYPOINT + CMD). An explicit `command` runs as given with the host's binaries,
whatever the image, except that the image's own entrypoint names (`/agnhost`, `nginx`,
`/http-echo`, `/pause`, ...) still mean the built-in program. An image not in the catalog
with no `command` raises `ImageNotFound` (show it as ErrImagePull / ImagePullBackOff).

References are matched the way Docker reads them: `nginx`, `nginx:1.25`,
`docker.io/library/nginx:latest` and `nginx@sha256:...` are all `docker.io/library/nginx`;
any tag is accepted. `catalog()` lists the images (for `knet images` and messages).

Built-in programs run as `python -S -I .../images/launch.py PROG ...` on a small epoll loop
(_loop.py), stdlib C modules only: ~35 ms of CPU to start, against ~110 ms for
`python -m knet.runtime.images.PROG` (which works too) and ~170 ms with asyncio. They listen
on 0.0.0.0 (env KNET_LISTEN_HOST overrides), log to stderr and exit 0 promptly on SIGTERM.
`knet/whoami` prints env POD_NAME (else the UTS hostname, which the runtime sets to the pod
name) and env NODE_NAME when set (give it with a fieldRef to spec.nodeName). `busybox` and
`alpine` are the host's binaries (`sh`, `sleep`, `wget` is GNU wget, `nc`, `nslookup`): their
ENTRYPOINT is empty and CMD is `sh`. `knet/dns` (alias `registry.k8s.io/coredns/coredns`)
is `python -m knet.dns` with the full interpreter; its args come from the pod spec.
"""

from __future__ import annotations

import os
import sys

from knet.errors import KnetError

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~10 ms at each start

if TYPE_CHECKING:  # this package is imported by every built-in program: keep it light
    from collections.abc import Sequence

__all__ = ["Image", "ImageNotFound", "catalog", "lookup", "normalize", "resolve"]

_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")


class ImageNotFound(KnetError):
    """The image is not built in and the container gives no command to run instead."""


class Image:
    """One catalog entry. `program` is a module of this package (None: host binaries);
    `aliases` are the names its real image's entrypoint goes by in `command:`;
    `python_module` runs with the full interpreter (it needs site-packages)."""

    __slots__ = ("aliases", "cmd", "description", "program", "python_module", "refs")

    def __init__(self, refs: tuple[str, ...], description: str, program: str | None = None,
                 *, cmd: tuple[str, ...] = (), aliases: tuple[str, ...] = (),
                 python_module: str | None = None) -> None:
        self.refs, self.description, self.program = refs, description, program
        self.cmd, self.aliases, self.python_module = cmd, aliases, python_module

    def __repr__(self) -> str:
        return f"<Image {self.name} program={self.program or self.python_module or 'host'}>"

    @property
    def name(self) -> str:
        return self.refs[0]

    def entrypoint(self, python: str) -> list[str]:
        if self.python_module:  # this knet, whatever the container's working directory
            return [python, "-P", _LAUNCHER, "-m", self.python_module]
        if self.program:
            return [python, "-S", "-I", _LAUNCHER, self.program]
        return []


_CATALOG: tuple[Image, ...] = (
    Image(("nginx",), "static HTTP on :80, nginx welcome page or /usr/share/nginx/html",
          "nginx", aliases=("nginx", "/usr/sbin/nginx", "/docker-entrypoint.sh")),
    Image(("busybox",), "the host's sh, sleep, wget, nc, ... (CMD sh)", cmd=("sh",)),
    Image(("alpine",), "the host's sh, sleep, wget, ... (CMD /bin/sh)", cmd=("/bin/sh",)),
    Image(("curlimages/curl",), "the host's curl", cmd=("curl",)),
    Image(("hashicorp/http-echo",), "HTTP echo of -text on -listen (default :5678)",
          "http_echo", aliases=("/http-echo", "http-echo")),
    Image(("registry.k8s.io/e2e-test-images/agnhost", "k8s.gcr.io/e2e-test-images/agnhost"),
          "agnhost: netexec, serve-hostname, pause", "agnhost", cmd=("pause",),
          aliases=("/agnhost", "agnhost")),
    Image(("registry.k8s.io/pause", "k8s.gcr.io/pause"), "sleeps until SIGTERM", "pause",
          aliases=("/pause", "pause")),
    Image(("knet/whoami", "traefik/whoami", "containous/whoami"),
          "HTTP on :80: pod name, pod IP, node, client address, headers (JSON at /api)",
          "whoami", aliases=("/whoami", "whoami")),
    Image(("knet/dns", "knet/coredns", "registry.k8s.io/coredns/coredns"),
          "knet's cluster DNS (python -m knet.dns)", python_module="knet.dns"),
)


def normalize(ref: str) -> str:
    """`nginx:1.25` -> `docker.io/library/nginx` (registry/repository, no tag or digest)."""
    ref = ref.strip().split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref = ref[:colon]
    parts = ref.split("/")
    first = parts[0]
    if len(parts) == 1 or not ("." in first or ":" in first or first == "localhost"):
        parts = ["docker.io", *parts]
    if parts[0] in ("index.docker.io", "registry-1.docker.io"):
        parts[0] = "docker.io"
    if parts[0] == "docker.io" and len(parts) == 2:
        parts.insert(1, "library")
    return "/".join(parts).lower()


def catalog() -> list[Image]:
    """Every built-in image, for listings (`knet images`) and error messages."""
    return list(_CATALOG)


def lookup(image: str) -> Image | None:
    want = normalize(image)
    for img in _CATALOG:
        if any(normalize(r) == want for r in img.refs):
            return img
    return None


def resolve(image: str, command: Sequence[str] | None, args: Sequence[str] | None, *,
            python: str | None = None) -> list[str]:
    """The argv to exec for a container (see the module docstring)."""
    py = python or sys.executable
    img = lookup(image)
    extra = list(args) if args else None
    if command:
        if img is not None and command[0] in img.aliases:
            return img.entrypoint(py) + list(command[1:]) + (extra or [])
        return list(command) + (extra or [])
    if img is None:
        names = ", ".join(i.name for i in _CATALOG)
        raise ImageNotFound(
            f'image "{image}" is not in knet\'s built-in catalog (knet runs no registry); '
            f"use one of: {names}; or give the container a command: to run a host binary")
    argv = img.entrypoint(py) + (extra if extra is not None else list(img.cmd))
    if not argv:
        raise ImageNotFound(f'image "{image}" has no entrypoint and the container gives '
                            "no command or args; give it a command:")
    return argv
