"""Runs one lab's steps against a cluster, in the lab's own namespace, and reports each
step through a callback (only knet/cli prints).

Key choice: a step either passes or stops the lab with a message naming the step, what was
expected and what was seen; cleanup (the lab's own steps, then the namespace) always runs.
A step that `needs` a knet command this install lacks is reported as SKIPPED, never as passed.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from knet.errors import KnetError
from knet.labs import expect as expectations
from knet.labs import waits
from knet.labs.kube import Kube, is_ready, live
from knet.labs.model import Lab, Run, Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabEvent:
    """kind: say | step | output | ok | fail | skip."""
    kind: str
    text: str
    index: int = 0


Report = Callable[[LabEvent], None]


class StepFailed(KnetError):
    pass


@dataclass
class LabResult:
    ok: bool
    message: str = ""
    skipped: list[str] = field(default_factory=list)


def knet_has(command: str) -> bool:
    """True if this knet has the subcommand (its module in knet/cli/commands)."""
    return importlib.util.find_spec(f"knet.cli.commands.{command}") is not None


def _proxy_mode(state_dir: Path) -> str:
    """The kube-proxy mode of the cluster recorded in state_dir (userspace if none is)."""
    from knet.cluster.state import ClusterRecord

    try:
        rec = ClusterRecord.load(state_dir)
    except ValueError:
        return "userspace"
    return rec.options.proxy_mode if rec is not None else "userspace"


def substitute(text: str, env: dict[str, str]) -> str:
    """${name} -> its value; unknown names (shell variables) are left alone."""
    return re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), text)


class LabRun:
    """One run of one lab in namespace `namespace` of the cluster behind `kube`."""

    def __init__(self, lab: Lab, lab_dir: Path, kube: Kube, *, namespace: str,
                 report: Report, overrides: dict[str, str] | None = None,
                 before_step: Callable[[int, Step], None] | None = None) -> None:
        self.lab, self.dir, self.ns = lab, lab_dir, namespace
        self.kube = kube.in_namespace(namespace)
        self.report, self.before_step = report, before_step
        unknown = set(overrides or {}) - set(lab.vars)
        if unknown:
            raise KnetError(f"lab {lab_dir.name}: no variable {', '.join(sorted(unknown))}; "
                            f"it has: {', '.join(sorted(lab.vars)) or 'none'}")
        self.vars = {**lab.vars, **(overrides or {}), "ns": namespace, "lab_dir": str(lab_dir),
                     "state_dir": str(kube.kubeconfig.parent),
                     "proxy_mode": _proxy_mode(kube.kubeconfig.parent),
                     "knet": f"{sys.executable} -m knet.cli.main"}
        self.background: dict[str, subprocess.Popen[str]] = {}

    def __repr__(self) -> str:
        return f"<LabRun {self.dir.name} ns={self.ns}>"

    def run(self) -> LabResult:
        """Set up the namespace, run every step, always clean up."""
        result = LabResult(ok=True)
        try:
            self._fresh_namespace()
            for i, step in enumerate(self.lab.steps, 1):
                if self.before_step:
                    self.before_step(i, step)
                if step.mode and step.mode != self.vars["proxy_mode"]:
                    continue   # a step of the other kube-proxy mode (the lab teaches both)
                if step.needs and not knet_has(step.needs):
                    msg = f"needs 'knet {step.needs}', which this knet does not have yet"
                    result.skipped.append(f"step {i}: {msg}")
                    self.report(LabEvent("skip", f"{self._title(step)}: SKIPPED, {msg}", i))
                    continue
                try:
                    self._step(i, step)
                except (StepFailed, KnetError) as exc:
                    text = f"step {i} ({self._title(step)}): {exc}"
                    self.report(LabEvent("fail", text, i))
                    return LabResult(ok=False, message=text, skipped=result.skipped)
        finally:
            stuck = self.cleanup()
        if stuck and result.ok:
            self.report(LabEvent("fail", stuck))
            return LabResult(ok=False, message=stuck, skipped=result.skipped)
        return result

    def cleanup(self) -> str:
        """Stop background runs, run the lab's cleanup steps, delete the namespace; returns
        a problem to report ("" if none): a namespace that does not go away is a bug."""
        for proc in self.background.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for step in self.lab.cleanup:
            try:
                self._step(0, step)
            except (StepFailed, KnetError) as exc:
                log.warning("lab %s: cleanup step failed: %s", self.dir.name, exc)
        try:
            self.kube.in_namespace(None).run("delete", "namespace", self.ns, "--wait=true",
                                             "--ignore-not-found", timeout=120)
        except KnetError:
            left = self.kube.run("get", "all,endpointslices,configmaps,secrets", "-o", "wide",
                                 timeout=30)
            return (f"cleanup: namespace {self.ns} not gone 120s after 'kubectl delete "
                    f"namespace'; left in it:\n{(left.stdout + left.stderr).strip()[-1500:]}")
        return ""

    def _fresh_namespace(self) -> None:
        top = self.kube.in_namespace(None)
        top.run("delete", "namespace", self.ns, "--ignore-not-found", "--wait=true", timeout=120)
        top.run("create", "namespace", self.ns, check=True)

    def _title(self, step: Step) -> str:
        if step.title:
            return self.sub(step.title)
        if step.say is not None:
            return "say"
        if step.apply:
            return f"apply {step.apply}"
        if step.run or step.background:
            r = step.run or step.background
            assert r is not None
            where = r.pod or r.selector or ("host" if r.host else "kubectl")
            what = r.cmd or r.host or r.kubectl or ""
            shown = substitute(what, {**self.vars, "knet": "knet"})
            return f"{'background ' if step.background else ''}{where}: {shown}"
        if step.wait:
            return "wait for " + ", ".join(f"{k}={v}" for k, v in step.wait.model_dump(
                exclude_defaults=True).items())
        return f"{step.action} {getattr(step, step.action)}"

    def sub(self, text: str) -> str:
        return substitute(text, self.vars)

    def _step(self, i: int, step: Step) -> None:
        if step.say is not None:
            self.report(LabEvent("say", self.sub(step.say).strip(), i))
            return
        self.report(LabEvent("step", self._title(step), i))
        if step.apply or step.manifest:
            text = (self.dir / step.apply).read_text() if step.apply else step.manifest or ""
            self.report(LabEvent("output", self.kube.apply(self.sub(text)).strip(), i))
        elif step.delete:
            self.kube.run("delete", *shlex.split(self.sub(step.delete)), "--wait=false",
                          check=True, timeout=60)
        elif step.sleep is not None:
            time.sleep(step.sleep)
        elif step.set is not None:
            self.vars.update({k: self.sub(v) for k, v in step.set.items()})
        elif step.wait:
            waits.wait(self.kube, step.wait, self.sub)
        elif step.background:
            assert step.name
            self.background[step.name] = subprocess.Popen(
                self._argv(step.background), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, env=self._env(), cwd=self.dir, stdin=subprocess.DEVNULL)
        elif step.join:
            self._join(i, step)
        elif step.run:
            self._run(i, step, step.run)
        self.report(LabEvent("ok", self._title(step), i))

    def _run(self, i: int, step: Step, run: Run) -> None:
        deadline = time.monotonic() + (step.until or 0)
        while True:
            proc = subprocess.run(self._argv(run), capture_output=True, text=True,
                                  env=self._env(), cwd=self.dir, timeout=run.timeout + 5,
                                  stdin=subprocess.DEVNULL, check=False)
            out = proc.stdout + proc.stderr
            fails = self._check(step, out, proc.returncode)
            if not fails or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        self.report(LabEvent("output", out.rstrip(), i))
        if fails:
            raise StepFailed("; ".join(fails) + _tail(out))
        if step.save:
            self.vars[step.save] = proc.stdout.strip()

    def _join(self, i: int, step: Step) -> None:
        assert step.join
        proc = self.background.pop(step.join, None)
        if proc is None:
            raise StepFailed(f"no background run named {step.join!r}")
        try:
            out, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise StepFailed(f"background run {step.join} did not end within 300s") from None
        self.report(LabEvent("output", out.rstrip(), i))
        fails = self._check(step, out, proc.returncode)
        if fails:
            raise StepFailed("; ".join(fails) + _tail(out))

    def _check(self, step: Step, out: str, code: int) -> list[str]:
        if step.expect is None:
            return [] if code == 0 else [f"exit code {code}"]
        exp = step.expect.model_copy(update={
            "contains": [self.sub(s) for s in step.expect.contains],
            "not_contains": [self.sub(s) for s in step.expect.not_contains],
            "regex": [self.sub(s) for s in step.expect.regex],
            "extract": self.sub(step.expect.extract) if step.expect.extract else None})
        return expectations.check(exp, out, code, self.vars)

    def _argv(self, run: Run) -> list[str]:
        if run.host:
            return ["bash", "-c", self.sub(run.host)]
        if run.kubectl:
            return self.kube.argv(*shlex.split(self.sub(run.kubectl)))
        pod = self.sub(run.pod) if run.pod else self._pick(self.sub(run.selector or ""))
        ctr = ["-c", self.sub(run.container)] if run.container else []
        return self.kube.argv("exec", pod, *ctr, "--", "sh", "-c", self.sub(run.cmd or ""))

    def _pick(self, selector: str) -> str:
        pods = [p for p in live(self.kube.get_json("pods", "-l", selector)["items"])
                if is_ready(p)]
        if not pods:
            raise StepFailed(f"no Ready pod matches {selector!r} in namespace {self.ns}")
        return str(min(p["metadata"]["name"] for p in pods))

    def _env(self) -> dict[str, str]:
        return {**self.kube.env(), "NS": self.ns, "KNET_NAMESPACE": self.ns}


def _tail(out: str, lines: int = 12) -> str:
    kept = out.strip().splitlines()[-lines:]
    return ("\n    output:\n      " + "\n      ".join(kept)) if kept else " (no output)"
