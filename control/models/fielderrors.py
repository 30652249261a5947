"""Field errors collected during validation, worded as Kubernetes words them.

One `FieldErrors` is passed down through the validators; each problem becomes a Cause with
the field path (`spec.containers[0].ports[1].containerPort`) and a body like
`Invalid value: 0: must be between 1 and 65535, inclusive`. `raise_if_any()` turns them into
one 422 Invalid whose message lists every cause, as the API server needs to send it. Warnings
(fields knet keeps but does not act on) are collected alongside.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from control.errors import Cause, Invalid

__all__ = ["FieldErrors", "show"]


def show(value: Any) -> str:
    """A value as Kubernetes prints it in a field error: strings quoted, the rest as JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


class FieldErrors:
    __slots__ = ("causes", "warnings")

    def __init__(self) -> None:
        self.causes: list[Cause] = []
        self.warnings: list[str] = []

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.causes.append(Cause(field, f"Invalid value: {show(value)}: {detail}",
                                 "FieldValueInvalid"))

    def required(self, field: str, detail: str = "") -> None:
        msg = "Required value" + (f": {detail}" if detail else "")
        self.causes.append(Cause(field, msg, "FieldValueRequired"))

    def not_supported(self, field: str, value: Any, supported: tuple[str, ...]) -> None:
        allowed = ", ".join(json.dumps(s) for s in supported)
        self.causes.append(Cause(field, f"Unsupported value: {show(value)}: supported values: "
                                 f"{allowed}", "FieldValueNotSupported"))

    def duplicate(self, field: str, value: Any) -> None:
        self.causes.append(Cause(field, f"Duplicate value: {show(value)}", "FieldValueDuplicate"))

    def forbidden(self, field: str, detail: str) -> None:
        self.causes.append(Cause(field, f"Forbidden: {detail}", "FieldValueForbidden"))

    def not_found(self, field: str, value: Any) -> None:
        self.causes.append(Cause(field, f"Not found: {show(value)}", "FieldValueNotFound"))

    def too_long(self, field: str, limit: int) -> None:
        self.causes.append(Cause(field, f"Too long: may not be more than {limit} bytes",
                                 "FieldValueTooLong"))

    def type_error(self, field: str, value: Any, expected: str) -> None:
        self.causes.append(Cause(field, f"Invalid value: {show(value)}: must be {expected}",
                                 "FieldValueTypeInvalid"))

    def warn(self, field: str, detail: str) -> None:
        self.warnings.append(f"{field}: {detail}")

    # -- helpers used by many validators ----------------------------------------------------

    def list_of(self, field: str, value: Any) -> list[Any]:
        """`value` if it is a list ([] for None); a type error and [] otherwise."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.type_error(field, value, "a list")
            return []
        return value

    def map_of(self, field: str, value: Any) -> dict[str, Any]:
        """`value` if it is an object ({} for None); a type error and {} otherwise."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.type_error(field, value, "an object")
            return {}
        return value

    def names(self, field: str, value: Any, errs_of: Callable[[str], tuple[str, ...]]) -> bool:
        """Check `value` with a names.* checker; record one Invalid per problem."""
        if not isinstance(value, str):
            self.type_error(field, value, "a string")
            return False
        errs = errs_of(value)
        for e in errs:
            self.invalid(field, value, e)
        return not errs

    def int_range(self, field: str, value: Any, low: int, high: int | None = None) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            self.type_error(field, value, "an integer")
            return False
        if high is None:
            if value < low:
                self.invalid(field, value, f"must be greater than or equal to {low}")
                return False
        elif not low <= value <= high:
            self.invalid(field, value, f"must be between {low} and {high}, inclusive")
            return False
        return True

    def one_of(self, field: str, value: Any, supported: tuple[str, ...]) -> bool:
        if value not in supported:
            self.not_supported(field, value, supported)
            return False
        return True

    def raise_if_any(self, *, kind: str, group: str, name: str) -> None:
        if not self.causes:
            return
        qualified = f"{kind}.{group}" if group else kind
        parts = [f"{c.field}: {c.message}" for c in self.causes]
        listed = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
        raise Invalid(f'{qualified} "{name}" is invalid: {listed}', kind=kind, name=name,
                      group=group, causes=list(self.causes))
