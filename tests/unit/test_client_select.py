"""RFC 2782 ordering: permutation, priority first, determinism, and the weighted draw."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import dns.rdata
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorfleet.client.select import rfc2782_order

N = 20_000  # first picks per distribution test
SIGMAS = 4.5  # see _assert_share


@dataclass(frozen=True)
class Srv:
    name: str
    priority: int
    weight: int


def srvs(*specs: tuple[int, int]) -> list[Srv]:
    return [Srv(f"m{i}", priority, weight) for i, (priority, weight) in enumerate(specs)]


records = st.lists(
    st.tuples(
        st.integers(0, 3) | st.integers(0, 65535),  # few priorities, so they tie
        st.sampled_from([0, 1, 65535]) | st.integers(0, 65535),
    ),
    max_size=12,
).map(lambda specs: srvs(*specs))


def first_picks(items: list[Srv], seed: int = 2782, n: int = N) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(rfc2782_order(items, rng)[0].name for _ in range(n))


def rfc_first_share(weights: tuple[int, ...]) -> list[float]:
    """Exact chance of being first: r is uniform on 0..total, and the front item also
    wins r=0 (weight-0 items are moved to the front first, keeping input order).

    Plain weight/total is off by up to 1/(total+1): 0.0089 for (10, 20, 70), about
    4.2 sigma at N=20,000, too close to the tolerance to test against."""
    order = sorted(range(len(weights)), key=lambda i: weights[i] != 0)
    counts = [float(weights[i]) for i in range(len(weights))]
    counts[order[0]] += 1
    return [c / (sum(weights) + 1) for c in counts]


def _assert_share(count: int, p: float, n: int = N) -> None:
    # The number of first picks is Binomial(n, p): standard deviation sqrt(p(1-p)/n) as
    # a share (0.0021 for p=0.1 at n=20,000). 4.5 sigma two-sided is a 7e-6 chance of a
    # false failure per check, so the bound does not depend on the fixed seed, yet a
    # draw that ignores weights (share 1/3 for every item) misses by over 100 sigma.
    tolerance = SIGMAS * math.sqrt(p * (1 - p) / n)
    assert abs(count / n - p) <= tolerance, (count / n, p, tolerance)


@settings(max_examples=100)
@given(records, st.integers())
def test_output_is_a_permutation_in_priority_order(items: list[Srv], seed: int) -> None:
    ordered = rfc2782_order(items, random.Random(seed))
    assert Counter(ordered) == Counter(items)
    assert [s.priority for s in ordered] == sorted(s.priority for s in items)


@settings(max_examples=100)
@given(records, st.integers())
def test_same_seed_same_order_and_input_untouched(items: list[Srv], seed: int) -> None:
    before = list(items)
    first = rfc2782_order(items, random.Random(seed))
    assert rfc2782_order(items, random.Random(seed)) == first
    assert items == before
    assert first is not items


def test_takes_dnspython_srv_rdata() -> None:
    rdatas = [
        dns.rdata.from_text("IN", "SRV", text)
        for text in ("20 100 80 lagging.example.net.", "10 0 80 fresh.example.net.")
    ]
    ordered = rfc2782_order(rdatas, random.Random(1))
    assert [str(r.target) for r in ordered] == ["fresh.example.net.", "lagging.example.net."]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "items",
    [
        srvs((20, 65535), (10, 0)),
        srvs((30, 65535), (20, 65535), (10, 1), (10, 0)),
        srvs((1, 1), (0, 0), (1, 0), (0, 65535)),
    ],
)
def test_lower_priority_always_first_whatever_the_weight(items: list[Srv], seed: int) -> None:
    priorities = [s.priority for s in rfc2782_order(items, random.Random(seed))]
    assert priorities == sorted(priorities)


@pytest.mark.parametrize(
    "weights",
    [
        (10, 20, 70),
        (1000, 2000, 7000),
    ],
)
def test_first_pick_follows_the_weights(weights: tuple[int, ...]) -> None:
    items = srvs(*((10, w) for w in weights))
    picks = first_picks(items)
    for item, p in zip(items, rfc_first_share(weights), strict=True):
        _assert_share(picks[item.name], p)
    if min(weights) >= 1000:  # the inclusive draw's 1/(total+1) bias is then negligible
        for item, w in zip(items, weights, strict=True):
            _assert_share(picks[item.name], w / sum(weights))


@pytest.mark.parametrize("weights", [(50, 0, 50), (10, 20, 70, 0)])
def test_weight_zero_is_first_only_rarely(weights: tuple[int, ...]) -> None:
    items = srvs(*((10, w) for w in weights))
    zero = items[weights.index(0)]
    count = first_picks(items)[zero.name]
    assert 0 < count / N <= 0.02  # only when r == 0: 1/101 here
    _assert_share(count, 1 / (sum(weights) + 1))


@pytest.mark.parametrize("size", [2, 3, 5])
def test_all_zero_weights_still_order_everything(size: int) -> None:
    items = srvs(*((10, 0) for _ in range(size)))
    rng = random.Random(7)
    orders = [rfc2782_order(items, rng) for _ in range(2_000)]
    assert all(sorted(o, key=items.index) == items for o in orders)
    firsts = Counter(o[0].name for o in orders)
    for item in items:
        _assert_share(firsts[item.name], 1 / size, n=len(orders))


def test_zero_weights_last_in_a_priority_are_uniform() -> None:
    # Once the weighted items are gone the remaining weight-0 items share the draw.
    items = srvs((10, 0), (10, 0), (10, 65535))
    rng = random.Random(11)
    lasts = Counter(rfc2782_order(items, rng)[-1].name for _ in range(4_000))
    assert set(lasts) == {"m0", "m1"}
    _assert_share(lasts["m0"], 0.5, n=4_000)
