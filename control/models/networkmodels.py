"""Typed views of the networking.k8s.io and policy kinds knet stores (control.models.networking
holds their defaults, validation and printers). Specs stay loose dicts until a controller
needs typed fields; unknown fields round-trip as for every model."""

from __future__ import annotations

from typing import Any

from control.models.meta import TopLevel

__all__ = ["Ingress", "IngressClass", "NetworkPolicy", "PodDisruptionBudget"]


class Ingress(TopLevel):
    api_version: str | None = "networking.k8s.io/v1"
    kind: str | None = "Ingress"
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class IngressClass(TopLevel):
    api_version: str | None = "networking.k8s.io/v1"
    kind: str | None = "IngressClass"
    spec: dict[str, Any] | None = None


class NetworkPolicy(TopLevel):
    api_version: str | None = "networking.k8s.io/v1"
    kind: str | None = "NetworkPolicy"
    spec: dict[str, Any] | None = None


class PodDisruptionBudget(TopLevel):
    api_version: str | None = "policy/v1"
    kind: str | None = "PodDisruptionBudget"
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
