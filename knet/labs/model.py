"""The lab.yaml schema (pydantic v2): a lab is a title, the cluster it needs, variables, and
a list of steps; each step does exactly one thing (say, apply, delete, wait, run, sleep)
and a run step may carry expectations on its output.

Key choice: labs are data. Variables (`vars:`, overridable with `--set key=value`) are
substituted as ${name} in every manifest, command and selector, so a negative test can break
one behaviour (e.g. `--set affinity=None`) and watch the checks fail, without editing a lab.
"""

from __future__ import annotations

from pathlib import Path

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from knet.errors import KnetError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EachAppears(_Strict):
    """Exactly `values` distinct values, each seen exactly `times` times."""
    values: int
    times: int


class Expect(_Strict):
    """Checks on a command's output (after `extract`, if given, keeps group 1 of each match)."""
    exit_code: int | None = None
    contains: list[str] = []
    not_contains: list[str] = []
    regex: list[str] = []
    extract: str | None = None
    count: int | None = None  # number of (extracted) lines
    distinct: int | None = None  # number of distinct (extracted) lines
    min_distinct: int | None = None
    max_distinct: int | None = None
    each_appears: EachAppears | None = None
    same_as: str | None = None  # output must equal a saved variable
    differs_from: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, raw: object) -> object:
        if isinstance(raw, dict):
            for key in ("contains", "not_contains", "regex"):
                if isinstance(raw.get(key), str):
                    raw = {**raw, key: [raw[key]]}
        return raw


class Wait(_Strict):
    """Wait for one condition, polling until `timeout` seconds."""
    pods: str | None = None  # a label selector: `ready` pods Ready and no other live pod
    ready: int = 1
    rollout: str | None = None  # e.g. deployment/web: kubectl rollout status
    get: str | None = None  # kubectl get ARGS -o json ...
    expr: str | None = None  # ... and a Python expression on `obj` that must be true
    gone: str | None = None  # kubectl get ARGS finds nothing (NotFound or an empty list)
    timeout: float = 60.0

    @model_validator(mode="after")
    def _one(self) -> Wait:
        picked = [k for k in ("pods", "rollout", "get", "gone") if getattr(self, k)]
        if len(picked) != 1:
            raise ValueError("wait needs exactly one of pods, rollout, get (+ expr), gone")
        if self.get and not self.expr:
            raise ValueError("wait: get needs an expr")
        return self


class Run(_Strict):
    """A command: in a pod (`pod` name or `selector`), on the host (`host`), or kubectl."""
    pod: str | None = None
    selector: str | None = None
    container: str | None = None
    cmd: str | None = None  # a shell command line (sh -c), for pod runs
    host: str | None = None  # a shell command line on the host (KUBECONFIG and NS set)
    kubectl: str | None = None  # kubectl arguments (namespace added)
    timeout: float = 60.0

    @model_validator(mode="after")
    def _one(self) -> Run:
        where = [k for k in ("pod", "selector", "host", "kubectl") if getattr(self, k)]
        if len(where) != 1:
            raise ValueError("run needs exactly one of pod, selector, host, kubectl")
        if (self.pod or self.selector) and not self.cmd:
            raise ValueError("run in a pod needs cmd")
        return self


ACTIONS = ("say", "apply", "manifest", "delete", "wait", "run", "sleep", "background", "join",
           "set")


class Step(_Strict):
    say: str | None = None  # narration (shown by `lab run`, silent in `lab check`)
    apply: str | None = None  # a manifest file in the lab's directory
    manifest: str | None = None  # an inline manifest
    delete: str | None = None  # kubectl delete ARGS
    wait: Wait | None = None
    run: Run | None = None
    background: Run | None = None  # start a run, keep going; `join` collects it
    join: str | None = None  # name of a background run: wait for it, then check `expect`
    name: str | None = None  # name of a background run
    sleep: float | None = None
    set: dict[str, str] | None = None  # change variables for the following steps
    expect: Expect | None = None
    save: str | None = None  # store the stripped output in this variable
    until: float | None = None  # retry run+expect for up to this many seconds
    title: str | None = None  # what the step shows (default: derived from the action)
    needs: str | None = None  # a knet command this step needs, e.g. "trace": skipped if absent
    mode: str | None = None  # only in this kube-proxy mode (userspace | nftables), else left out

    @model_validator(mode="after")
    def _one(self) -> Step:
        picked = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(picked) != 1:
            raise ValueError(f"a step does exactly one of {', '.join(ACTIONS)}; got "
                             f"{picked or 'none'}")
        if self.background and not self.name:
            raise ValueError("background needs a name (for the join step)")
        if self.expect and not (self.run or self.join):
            raise ValueError("expect belongs to a run or join step")
        return self

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)


class ClusterNeeds(_Strict):
    nodes: int = 2
    env: dict[str, str] = Field(default_factory=dict)  # for `knet up` (control plane, agents)
    # more `knet up` flags, e.g. [--backend, vxlan]: `check --all` runs the labs that ask for
    # the same flags on one cluster each
    up: list[str] = Field(default_factory=list)


class Lab(_Strict):
    title: str
    summary: str = ""
    cluster: ClusterNeeds = Field(default_factory=ClusterNeeds)
    vars: dict[str, str] = Field(default_factory=dict)
    steps: list[Step]
    cleanup: list[Step] = []


def load_lab(path: Path) -> Lab:
    """Parse and validate a lab.yaml; errors name the file and the bad field."""
    try:
        raw = yaml.safe_load(path.read_text())
        return Lab.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise KnetError(f"lab {path}: cannot read it ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KnetError(f"lab {path}: {where}: {first['msg']} ({exc.error_count()} "
                        "error(s); fix the lab.yaml)") from None
