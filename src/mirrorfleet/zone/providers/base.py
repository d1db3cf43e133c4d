"""The one interface every DNS provider implements.

The plan never imports a provider; a provider imports the plan. Adding a provider is
a subclass here and a line in providers/__init__.py, nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from mirrorfleet.zone.plan import Plan
from mirrorfleet.zone.records import RecordSet


class Provider(ABC):
    """Where records live: a server speaking RFC 2136, or a Route 53 hosted zone."""

    @abstractmethod
    def describe(self) -> str:
        """One line naming the zone's server or hosted zone, for logs and errors."""

    @abstractmethod
    def read_live(self) -> list[RecordSet]:
        """Every record set in the zone now, names relative to it."""

    @abstractmethod
    def apply(self, plan: Plan, owner: RecordSet, owner_is_live: bool) -> int:
        """Apply a plan conditional on our ownership marker; return messages sent."""
