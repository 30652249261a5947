"""A real cluster for end-to-end tests: `knet up --nodes 2` in a temporary state dir (inside
the test sandbox), driven with the real kubectl, and `knet down` at the end. The kit is
tests/integration/clusterkit.py (tests import it by name, never `conftest`: with several
directories collected together that name is ambiguous); its `cluster` fixture is offered
here."""

from __future__ import annotations

from clusterkit import cluster

__all__ = ["cluster"]
