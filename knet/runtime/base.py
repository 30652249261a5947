"""The container runtime seam: what the kubelet calls to run containers in a pod.

How to use it (kubelet side; `ProcessRuntime` in process.py is the implementation)::

    rt = ProcessRuntime()                       # namespaces=False: no root, for unit tests
    sandbox = PodSandbox.for_pod("default", "web-1", netns="knet-p-3fa9", pod_ip="10.244.1.5",
                                 pod_dir=state_dir / "pods" / uid)
    h = await rt.start(sandbox, ContainerSpec(name="app", argv=["sleep", "1d"]))
    code = await rt.wait(h)                     # 0, 1, ..., 128+N when killed by signal N
    code = await rt.stop(h, grace=30)           # SIGTERM to the group, SIGKILL after 30 s
    rt.last_exit(h)                             # ContainerExit(code, finished_at, reason)
    async for chunk in rt.read_logs(h, follow=True, tail_lines=10, timestamps=False): ...
    s = await rt.exec(sandbox, ["sh"], container="app", stdin=True, tty=True)
    h = rt.adopt(sandbox, "app")                # after an agent restart: the running one or None
    h = rt.latest(sandbox, "app")               # ... or the last one, to read its last_exit
    await rt.remove(sandbox)                    # kill what is left, delete the files it made
    await rt.close()                            # at agent exit: containers keep running

* `start` raises `ContainerStartError` (`.reason` RunContainerError or CreateContainerError,
  `.exit_code`: 127 and a message ending in "executable file not found in $PATH" for a
  missing command, 126 not executable, 128 other set-up failures) after writing the message
  to the instance's log. `handle.attempt` numbers the instances of one container (0, 1, ...,
  i.e. the restartCount); `previous=True` reads the log of the instance before, and a
  RuntimeError_ `previous terminated container "app" not found` says there is none.
* Containers keep running when the agent stops: `adopt`/`latest` find them again from the
  records in `pod_dir` (pid + start time from /proc, so a reused pid is never taken for
  them), and `wait` (with the real exit code), `stop`, `read_logs` and `exec` work on them.
* When a container's main process exits, the rest of it is killed (its process group, its
  mount namespace, its orphans), as a container runtime does with its cgroup.
* Logs are CRI lines (`2026-11-22T03:04:05.123456789Z stdout F message`), one file per
  container instance: `pod_dir/containers/NAME/ATTEMPT.log` (the previous one is kept).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from control.addresses import CLUSTER_DNS_IP, CLUSTER_DOMAIN
from knet.errors import RuntimeError_

CLUSTER_DNS = CLUSTER_DNS_IP
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_HOSTS_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def build_resolv_conf(namespace: str, *, nameserver: str = CLUSTER_DNS,
                      cluster_domain: str = CLUSTER_DOMAIN, ndots: int = 5) -> str:
    """The resolv.conf of a ClusterFirst pod in `namespace`, as the kubelet writes it."""
    search = f"{namespace}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}"
    return f"search {search}\nnameserver {nameserver}\noptions ndots:{ndots}\n"


def build_hosts(pod_ip: str, hostname: str, *, namespace: str, subdomain: str | None = None,
                cluster_domain: str = CLUSTER_DOMAIN,
                host_aliases: Sequence[tuple[str, Sequence[str]]] = ()) -> str:
    """The pod's /etc/hosts as the kubelet writes it: localhost lines, hostAliases, then
    `<podIP>\\t<hostname>.<subdomain>.<ns>.svc.<domain>\\t<hostname>` (FQDN only with a
    subdomain)."""
    out = _HOSTS_HEADER
    if host_aliases:
        out += "\n# Entries added by HostAliases.\n"
        out += "".join(f"{ip}\t" + "\t".join(names) + "\n" for ip, names in host_aliases)
    if subdomain:
        fqdn = f"{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}"
        return out + f"{pod_ip}\t{fqdn}\t{hostname}\n"
    return out + f"{pod_ip}\t{hostname}\n"


@dataclass(frozen=True)
class PodSandbox:
    """Where a pod's containers run: its netns (a name under /run/netns), the hostname
    they see, the directory for the runtime's files, and the contents of the pod's
    /etc/resolv.conf and /etc/hosts."""

    key: str
    netns: str
    hostname: str
    pod_dir: Path
    resolv_conf: str
    hosts: str
    share_pid: bool = False    # spec.shareProcessNamespace: one PID namespace for the pod

    @classmethod
    def for_pod(cls, namespace: str, name: str, *, netns: str, pod_ip: str, pod_dir: Path,
                hostname: str | None = None, subdomain: str | None = None,
                nameserver: str = CLUSTER_DNS, cluster_domain: str = CLUSTER_DOMAIN,
                host_aliases: Sequence[tuple[str, Sequence[str]]] = (),
                share_pid: bool = False) -> PodSandbox:
        host = hostname or name
        return cls(key=f"{namespace}/{name}", netns=netns, hostname=host, pod_dir=pod_dir,
                   share_pid=share_pid,
                   resolv_conf=build_resolv_conf(namespace, nameserver=nameserver,
                                                 cluster_domain=cluster_domain),
                   hosts=build_hosts(pod_ip, host, namespace=namespace, subdomain=subdomain,
                                     cluster_domain=cluster_domain, host_aliases=host_aliases))


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path into the container (volumes: emptyDir, configMap...)."""

    host_path: str
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """What to run. `env` is the whole environment; PATH, HOSTNAME and HOME get defaults
    (as a container runtime gives them) when missing. The rest is the container's
    securityContext (run_as_user/run_as_group default to root; capabilities are Docker's
    default set plus `cap_add` minus `cap_drop`, names as in Kubernetes: NET_ADMIN, ALL)
    and resources.limits (memory in bytes, cpu in millicores; None: unlimited)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    run_as_user: int | None = None
    run_as_group: int | None = None
    privileged: bool = False
    read_only_root: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    memory_limit: int | None = None
    cpu_limit_millis: int | None = None
    stdin: bool = False          # the shim keeps a stdin (or, with tty, a terminal) to attach
    stdin_once: bool = False
    tty: bool = False
    pid_target: str | None = None  # join this running container's PID namespace (kubectl
    #                                debug --target: an ephemeral container sees its processes)


@dataclass(frozen=True)
class ContainerHandle:
    """One running (or finished) instance of a container. `pid` is also its process group;
    `shim_pid` is the process that keeps its log and exit code (see process.py)."""

    id: str
    name: str
    pid: int
    started_at: float
    log_path: Path
    attempt: int = 0
    pod_key: str = ""
    pid_start: int = 0
    shim_pid: int = 0
    shim_start: int = 0

    def __repr__(self) -> str:
        return f"<Container {self.pod_key}/{self.name}#{self.attempt} pid={self.pid}>"


@dataclass(frozen=True)
class ContainerExit:
    """How an instance ended, for the kubelet's `state.terminated`."""

    exit_code: int
    finished_at: float
    reason: str          # Completed | Error | OOMKilled | StartError
    message: str = ""


class ContainerStartError(RuntimeError_):
    """The container could not be started. `reason` is the Kubernetes waiting reason the
    kubelet should show (RunContainerError, CreateContainerError), `exit_code` the code
    recorded for the instance, and the message says what was wrong."""

    def __init__(self, message: str, *, reason: str = "RunContainerError",
                 exit_code: int = 128) -> None:
        super().__init__(message)
        self.reason = reason
        self.exit_code = exit_code


class ExecSession(Protocol):
    """A command running in a container's namespaces. With tty=True, stdout carries the
    merged output of the pty and stderr is always empty."""

    @property
    def tty(self) -> bool: ...
    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def read_stdout(self, n: int = 65536) -> bytes: ...   # b"" at the end
    async def read_stderr(self, n: int = 65536) -> bytes: ...   # b"" at the end
    async def resize(self, *, cols: int, rows: int) -> None: ...
    async def wait(self) -> int: ...
    async def kill(self) -> None: ...


class Attachment(Protocol):
    """One client attached to a container's own stdin/terminal (`stdin: true`/`tty: true`);
    the output is the container's log, read with `read_logs(follow=True)`."""

    async def write_stdin(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...   # with stdinOnce, the container's stdin ends
    async def resize(self, *, cols: int, rows: int) -> None: ...
    async def close(self) -> None: ...


class Runtime(Protocol):
    async def start(self, sandbox: PodSandbox, spec: ContainerSpec) -> ContainerHandle: ...
    async def wait(self, handle: ContainerHandle) -> int: ...
    async def stop(self, handle: ContainerHandle, *, grace: float) -> int: ...
    def running(self, handle: ContainerHandle) -> bool: ...
    def last_exit(self, handle: ContainerHandle) -> ContainerExit | None: ...
    def adopt(self, sandbox: PodSandbox, container_name: str) -> ContainerHandle | None: ...
    def latest(self, sandbox: PodSandbox, container_name: str) -> ContainerHandle | None: ...
    async def remove(self, sandbox: PodSandbox) -> None: ...
    async def exec(self, sandbox: PodSandbox, argv: Sequence[str], *, container: str,
                   stdin: bool, tty: bool,
                   env: Mapping[str, str] | None = None) -> ExecSession: ...
    async def attach(self, handle: ContainerHandle) -> Attachment: ...  # RuntimeError_: none
    def read_logs(self, target: ContainerHandle | Path, *, follow: bool,
                  tail_lines: int | None = None, timestamps: bool = False,
                  previous: bool = False, since_ns: int | None = None,
                  limit_bytes: int | None = None) -> AsyncIterator[bytes]: ...
    async def close(self) -> None: ...
