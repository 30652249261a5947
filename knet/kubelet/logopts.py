"""PodLogOptions from the query of a `pods/NAME/log` request, checked as kube-apiserver's
ValidatePodLogOptions does and turned into what the kubelet's ReadLogs needs: tailLines,
since (sinceSeconds counts back from now, sinceTime is RFC 3339), limitBytes, timestamps,
follow and previous. Pure, so every rule and message is unit-tested; a bad value is a 422
`PodLogOptions "POD" is invalid: ...` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["InvalidLogOptions", "LogOptions", "parse"]


class InvalidLogOptions(ValueError):
    """The causes (field, message) of a 422 for the pod's log options."""

    def __init__(self, pod: str, causes: list[tuple[str, str]]) -> None:
        self.causes = causes
        parts = [f"{f}: {m}" if f else m for f, m in causes]
        listed = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        super().__init__(f'PodLogOptions "{pod}" is invalid: {listed}')


@dataclass(frozen=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_ns: int | None = None
    limit_bytes: int | None = None


def _int(query: Mapping[str, str], key: str, causes: list[tuple[str, str]]) -> int | None:
    raw = query.get(key)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        causes.append((key, f'Invalid value: "{raw}": must be an integer'))
        return None


def parse(query: Mapping[str, str], *, pod: str, now_ns: int) -> LogOptions:
    causes: list[tuple[str, str]] = []
    tail = _int(query, "tailLines", causes)
    if tail is not None and tail < 0:
        causes.append(("tailLines", f"Invalid value: {tail}: must be greater than or "
                                    "equal to 0"))
    limit = _int(query, "limitBytes", causes)
    if limit is not None and limit < 1:
        causes.append(("limitBytes", f"Invalid value: {limit}: must be greater than 0"))
    seconds = _int(query, "sinceSeconds", causes)
    since_ns = None
    if seconds is not None:
        if seconds < 1:
            causes.append(("sinceSeconds", f"Invalid value: {seconds}: must be greater than 0"))
        since_ns = now_ns - seconds * 1_000_000_000
    if query.get("sinceTime"):
        if seconds is not None:
            causes.append(("", "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be "
                               "specified"))
        try:
            when = datetime.fromisoformat(query["sinceTime"])
            if when.tzinfo is None:
                raise ValueError("no time zone")
            since_ns = int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000
        except ValueError:
            causes.append(("sinceTime", f'Invalid value: "{query["sinceTime"]}": must be an '
                                        "RFC 3339 time, e.g. 2006-01-02T15:04:05Z"))
    if causes:
        raise InvalidLogOptions(pod, causes)
    return LogOptions(follow=query.get("follow") == "true",
                      previous=query.get("previous") == "true",
                      timestamps=query.get("timestamps") == "true", tail_lines=tail,
                      since_ns=since_ns, limit_bytes=limit)
