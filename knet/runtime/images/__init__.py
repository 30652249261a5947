"""Built-in images: container image references mapped to real programs shipped in knet or
installed on the host, so Kubernetes tutorial YAML runs unchanged (knet runs no registry).

The API the kubelet calls::

    from knet.runtime.images import resolve, ImageNotFound
    argv = resolve(container["image"], container.get("command"), container.get("args"))

`resolve` applies Docker's rules with the image's declared ENTRYPOINT and CMD, as the real
image has them: `command` replaces the ENTRYPOINT and `args` the CMD (a `command` without
`args` drops the CMD). Then the first word of the result is looked up in the image's
`programs`: a name the real image ships (`/agnhost`, `nginx`, `/server`, `python`,
`redis-server`) becomes knet's program for it (a built-in, or a host binary such as Debian's
`redis-server` or `perl`); any other word runs as given with the host's binaries, as in
any image with a shell. An image's entrypoint script (`/entrypoint.sh`, the Docker library
images' `docker-entrypoint.sh`) is interpreted the way those scripts behave: it runs its
arguments, putting the image's main program first when the first argument is a flag.
An image not in the catalog with no `command` raises `ImageNotFound` (the kubelet shows
ErrImagePull); with a `command`, it runs the host binaries as given.

References are matched the way Docker reads them, tag and digest ignored: `nginx`,
`nginx:1.25`, `docker.io/library/nginx@sha256:...` are one image; `k8s.gcr.io/X`,
`gcr.io/google_containers/X` and `gcr.io/google-containers/X` are `registry.k8s.io/X` (the
same images moved), `gcr.io/kubernetes-e2e-test-images/X` is
`registry.k8s.io/e2e-test-images/X`. The entries are in _catalog.py.

Built-in programs run as `python -S -I .../images/launch.py PROG ...` on a small epoll loop
(_loop.py), stdlib C modules only (~35 ms of CPU to start). They listen on 0.0.0.0 (env
KNET_LISTEN_HOST overrides), log to stderr and exit promptly on SIGTERM.
"""

from __future__ import annotations

import os
import sys

from knet.errors import KnetError

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~10 ms at each start

if TYPE_CHECKING:  # this package is imported by every built-in program: keep it light
    from collections.abc import Mapping, Sequence

__all__ = ["Image", "ImageNotFound", "catalog", "files", "lookup", "normalize", "resolve"]

_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ARGS = "$@"  # in a program's argv template: where the container's remaining words go
# moved registries: prefix -> the prefix images live under today
_MOVED = (("k8s.gcr.io/", "registry.k8s.io/"), ("gcr.io/google_containers/", "registry.k8s.io/"),
          ("gcr.io/google-containers/", "registry.k8s.io/"),
          ("gcr.io/kubernetes-e2e-test-images/", "registry.k8s.io/e2e-test-images/"),
          ("index.docker.io/", "docker.io/"), ("registry-1.docker.io/", "docker.io/"))


class ImageNotFound(KnetError):
    """The image is not built in and the container gives no command to run instead."""


class Image:
    """One catalog entry: its references, the real image's ENTRYPOINT and CMD, and
    `programs`: argv templates for the names the image ships. A template starting with
    `@NAME` is knet's built-in program NAME (a module of this package), `@@MODULE` a module
    run with the full interpreter (it needs site-packages), anything else a host binary;
    `$@` marks where the remaining words go (default: at the end). `script` is the name of
    the image's entrypoint script, which runs its arguments (the CMD's first word first
    when they start with a flag or name a `.conf` file)."""

    __slots__ = ("cmd", "description", "entrypoint", "programs", "refs", "script")

    def __init__(self, refs: tuple[str, ...], description: str, *,
                 entrypoint: tuple[str, ...] = (), cmd: tuple[str, ...] = (),
                 programs: Mapping[str, tuple[str, ...]] | None = None,
                 script: str | None = None) -> None:
        self.refs, self.description, self.script = refs, description, script
        self.entrypoint, self.cmd = entrypoint, cmd
        self.programs: dict[str, tuple[str, ...]] = dict(programs or {})

    def __repr__(self) -> str:
        return f"<Image {self.name} program={self.program or 'host'}>"

    @property
    def name(self) -> str:
        return self.refs[0]

    @property
    def program(self) -> str | None:
        """The built-in program its default command runs (None: host binaries)."""
        head = _expand_script(self, [*self.entrypoint, *self.cmd])[:1]
        target = self.programs.get(head[0], ()) if head else ()
        return target[0].lstrip("@") if target and target[0].startswith("@") else None

    def argv(self, command: Sequence[str] | None, args: Sequence[str] | None, *,
             python: str) -> list[str]:
        """Docker's rules, then the image's programs (see the module docstring)."""
        if command:
            words = [*command, *(args or ())]
        else:
            words = [*self.entrypoint, *(args if args else self.cmd)]
        words = _expand_script(self, words)
        if not words or words[0] not in self.programs:
            return words
        template, rest = self.programs[words[0]], words[1:]
        out: list[str] = []
        for i, word in enumerate(template):
            if i == 0 and word.startswith("@@"):
                out += [python, "-P", _LAUNCHER, "-m", word[2:]]
            elif i == 0 and word.startswith("@"):
                out += [python, "-S", "-I", _LAUNCHER, word[1:]]
            elif word == ARGS:
                out += rest
            else:
                out.append(word)
        return out if ARGS in template else out + rest


def _expand_script(img: Image, words: list[str]) -> list[str]:
    if not img.script or not words or words[0] not in (img.script, f"/{img.script}",
                                                         f"/usr/local/bin/{img.script}"):
        return words
    rest = words[1:]
    if img.cmd and (not rest or rest[0].startswith("-") or rest[0].endswith(".conf")
                    or not _is_command(img, rest[0])):
        rest = [img.cmd[0], *rest]
    return rest


def _is_command(img: Image, word: str) -> bool:
    """Whether the image could exec `word` (curl's entrypoint runs `curl URL` otherwise)."""
    if word in img.programs:
        return True
    if "/" in word:
        return word.startswith(("/", "./"))
    import shutil
    return shutil.which(word, path=CONTAINER_PATH) is not None


def files(image: str, *, python: str | None = None) -> dict[str, str]:
    """The executables the real image ships at fixed paths (`/agnhost`, `/server`,
    `/serve_hostname`, ...) and the names it has on PATH that the host lacks (`python`), as
    small sh scripts running knet's program: container path -> script (paths the host has
    are left to the host's binary). The kubelet mounts them into the container, so `kubectl exec POD -- /agnhost connect HOST:PORT` works as
    the upstream e2e tests run it."""
    img = lookup(image)
    if img is None:
        return {}
    import shlex
    out: dict[str, str] = {}
    for name, template in sorted(img.programs.items()):
        if name.startswith("/"):
            path = name
        elif not template[0].startswith("@") and template[0] != name:
            path = f"/usr/local/bin/{name}"
        else:
            continue
        if os.path.exists(path):  # the host's own (/usr/sbin/nginx): exec finds the real one
            continue
        argv = img.argv([name], None, python=python or sys.executable)
        out[path] = (f"#!/bin/sh\n# {name} of {img.name}: knet's program for it\n"
                     f'exec {" ".join(shlex.quote(a) for a in argv)} "$@"\n')
    return out


def normalize(ref: str) -> str:
    """`nginx:1.25` -> `docker.io/library/nginx` (registry/repository, no tag or digest);
    `k8s.gcr.io/pause:3.9` -> `registry.k8s.io/pause`."""
    ref = ref.strip().split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref = ref[:colon]
    parts = ref.lower().split("/")
    first = parts[0]
    if len(parts) == 1 or not ("." in first or ":" in first or first == "localhost"):
        parts = ["docker.io", *parts]
    ref = "/".join(parts)
    for old, new in _MOVED:
        if ref.startswith(old):
            ref = new + ref[len(old):]
    if ref.startswith("docker.io/") and ref.count("/") == 1:
        ref = "docker.io/library/" + ref[len("docker.io/"):]
    return ref


def catalog() -> list[Image]:
    """Every built-in image, for listings (`knet images`) and error messages."""
    from knet.runtime.images._catalog import CATALOG
    return list(CATALOG)


def lookup(image: str) -> Image | None:
    want = normalize(image)
    for img in catalog():
        if any(normalize(r) == want for r in img.refs):
            return img
    return None


def resolve(image: str, command: Sequence[str] | None, args: Sequence[str] | None, *,
            python: str | None = None) -> list[str]:
    """The argv to exec for a container (see the module docstring)."""
    img = lookup(image)
    if img is None:
        if command:
            return [*command, *(args or ())]
        names = ", ".join(i.name for i in catalog())
        raise ImageNotFound(
            f'image "{image}" is not in knet\'s built-in catalog (knet runs no registry); '
            f"use one of: {names}; or give the container a command: to run a host binary")
    argv = img.argv(command, args, python=python or sys.executable)
    if not argv:
        raise ImageNotFound(f'image "{image}" has no entrypoint and the container gives '
                            "no command or args; give it a command:")
    return argv
