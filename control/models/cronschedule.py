"""CronJob schedules: parse as Kubernetes does (robfig/cron's standard parser, with its error
messages, which kube-apiserver returns verbatim in a 422), iterate with croniter.

    sched = parse_schedule("*/5 * * * *")           # raises ScheduleError("...")
    sched.next_after(dt)                            # the first fire time strictly after dt

Parsing is done here, field by field with robfig's ranges (day of week 0-6, `?` as `*`, names
like `jan`/`mon`, `N/step` meaning N-max/step, macros `@hourly` … `@yearly`, `@every 90s`), so
that what the API accepts is what Kubernetes accepts; each field is then rewritten in explicit
form for croniter, which does the calendar arithmetic (time zones, DST, day-of-month OR
day-of-week as in Vixie cron). `@every` is a constant delay, computed directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter  # type: ignore[import-untyped]

__all__ = ["Schedule", "ScheduleError", "load_zone", "parse_schedule"]

_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (low, high, names) of minute, hour, day of month, month, day of week
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS))
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_TZ_CHARS = re.compile(r"[A-Za-z.\-_0-9+]{1,14}\Z")


class ScheduleError(ValueError):
    """The schedule is not valid; the message is robfig/cron's (what Kubernetes says)."""


@dataclass(frozen=True)
class Schedule:
    text: str
    cron: str | None            # five explicit fields for croniter, or None for @every
    every: float = 0.0

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (an aware datetime, in its zone)."""
        if self.cron is None:
            base = after.replace(microsecond=0)
            return base + timedelta(seconds=self.every)
        it = croniter(self.cron, after.replace(microsecond=0))
        nxt: datetime = it.get_next(datetime)
        return nxt


def _int(text: str, expr: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ScheduleError(f'failed to parse int from {text}: strconv.Atoi: parsing '
                            f'"{text}": invalid syntax')
    value = int(text)
    if value < 0:
        raise ScheduleError(f"negative number ({value}) not allowed: {expr}")
    return value


def _int_or_name(text: str, names: dict[str, int], expr: str) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    return _int(text, expr)


def _range(part: str, low: int, high: int, names: dict[str, int]) -> str:
    """One comma-separated part of a field, checked as robfig checks it, made explicit."""
    range_step = part.split("/")
    low_high = range_step[0].split("-")
    if low_high[0] in ("*", "?"):
        start, end, star = low, high, True
    else:
        star = False
        start = _int_or_name(low_high[0], names, part)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], names, part)
        else:
            raise ScheduleError(f"too many hyphens: {part}")
    if len(range_step) == 1:
        step = 1
    elif len(range_step) == 2:
        step = _int(range_step[1], part)
        if len(low_high) == 1 and not star:
            end = high                              # "N/step" is "N-max/step"
    else:
        raise ScheduleError(f"too many slashes: {part}")
    if start < low:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({low}): {part}")
    if end > high:
        raise ScheduleError(f"end of range ({end}) above maximum ({high}): {part}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {part}")
    if star:
        return "*" if step == 1 else f"*/{step}"
    text = str(start) if start == end else f"{start}-{end}"
    return text if step == 1 else f"{text}/{step}"


def _every(text: str, spec: str) -> Schedule:
    rest = text.strip()
    total, pos = 0.0, 0
    for m in _DURATION.finditer(rest):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not rest or pos != len(rest):
        raise ScheduleError(f'failed to parse duration {spec}: time: invalid duration '
                            f'"{rest}"')
    return Schedule(spec, None, every=max(1.0, float(int(total))))


def parse_schedule(spec: str) -> Schedule:
    """The Schedule of a CronJob's `spec.schedule`, or ScheduleError with robfig's message."""
    text = spec.strip()
    if not text:
        raise ScheduleError("empty spec string")
    if text.startswith(("TZ=", "CRON_TZ=")):
        _tz, _, text = text.partition(" ")
        text = text.strip()
    if text.startswith("@"):
        if text.startswith("@every "):
            return _every(text[len("@every "):], text)
        if text not in _MACROS:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        return Schedule(spec, _MACROS[text])
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: "
                            f"[{' '.join(fields)}]")
    explicit = [",".join(_range(part, lo, hi, names) for part in field.split(","))
                for field, (lo, hi, names) in zip(fields, _FIELDS, strict=True)]
    return Schedule(spec, " ".join(explicit))


def load_zone(name: str) -> ZoneInfo:
    """An IANA time zone, or ValueError with Go's `time.LoadLocation` message."""
    if not name:
        raise ValueError("timeZone must be nil or non-empty string")
    if name.lower() == "local":
        raise ValueError("timeZone must be an explicit time zone as defined in "
                         "https://www.iana.org/time-zones")
    if any(part in (".", "..") or part.startswith("-") or not _TZ_CHARS.match(part)
           for part in name.split("/")):
        raise ValueError(f"unknown time zone {name}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name}") from None
