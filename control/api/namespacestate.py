"""Which namespaces exist and which are being emptied: the API server's in-memory view, kept
by `ObjectService` on every namespace write and rebuilt from the store at start.

One owner with a small interface, so deletion, creation and start-up never reach into
sets. The store stays the truth: a namespace unknown here is still looked up there before
a 404 (another API server may have made it)."""

from __future__ import annotations

__all__ = ["NamespaceStates"]


class NamespaceStates:
    def __init__(self) -> None:
        self._known: set[str] = set()
        self._terminating: set[str] = set()

    def __repr__(self) -> str:
        return f"<NamespaceStates {len(self._known)} known, {len(self._terminating)} terminating>"

    def created(self, name: str) -> None:
        self._known.add(name)

    def terminating(self, name: str) -> None:
        """The namespace has a deletionTimestamp: no new content until it is gone."""
        self._known.add(name)
        self._terminating.add(name)

    def gone(self, name: str) -> None:
        self._known.discard(name)
        self._terminating.discard(name)

    def is_known(self, name: str) -> bool:
        return name in self._known

    def is_terminating(self, name: str) -> bool:
        return name in self._terminating

    def all_terminating(self) -> list[str]:
        return sorted(self._terminating)
