"""RFC 2782's order for SRV records: lowest priority first, weighted random within one.

Within a priority, weight-0 records go to the front of the list before each draw, as
RFC 2782 says: the draw is between 0 and the sum of the weights, inclusive, so a
weight-0 record is picked only when the draw is exactly 0, a very small chance while
others carry weight. When every remaining record has weight 0, RFC 2782 allows any
order, and this module picks uniformly at random among them.

apt honours SRV priority and ignores weight, so freshness lives in priority
(docs/DNS.md); weight is only the mirror's capacity.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Ranked(Protocol):
    """Anything with an SRV priority and weight, e.g. dnspython's SRV rdata."""

    @property
    def priority(self) -> int: ...

    @property
    def weight(self) -> int: ...


T = TypeVar("T", bound=Ranked)


def rfc2782_order(items: Sequence[T], rng: random.Random) -> list[T]:
    """Every item, in the order a client should try them; the same for the same rng state."""
    ordered: list[T] = []
    by_priority = sorted(items, key=lambda item: item.priority)  # stable: input order kept
    for _, group in itertools.groupby(by_priority, key=lambda item: item.priority):
        ordered += _weighted_order(list(group), rng)
    return ordered


def _weighted_order(group: list[T], rng: random.Random) -> list[T]:
    remaining = sorted(group, key=lambda item: item.weight != 0)  # weight 0 first, stable
    ordered: list[T] = []
    while remaining:
        total = sum(item.weight for item in remaining)
        if total == 0:
            index = rng.randrange(len(remaining))
        else:
            r = rng.randint(0, total)
            running = itertools.accumulate(item.weight for item in remaining)
            index = next(i for i, value in enumerate(running) if value >= r)
        ordered.append(remaining.pop(index))
    return ordered
