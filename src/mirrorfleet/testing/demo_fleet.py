"""Made-up mirrors for tests and benchmarks: one generator, so every fleet of 1,000
looks the same wherever it is measured."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from mirrorfleet.zone.records import MirrorRecord


def mirror(
    label: str, state: str = "fresh", serial: int = 5, region: str | None = None
) -> MirrorRecord:
    return MirrorRecord(
        label=label,
        target=f"{label}.example.net",
        state=state,
        serial=serial,
        ts=1_700_000_000,
        chk=1_700_000_060,
        url=f"http://{label}.example.net/",
        region=region,
    )


def mirrors(
    numbers: int | Iterable[int],
    regions: int = 0,
    lagging: Collection[int] = (),
    serial: int = 5,
) -> list[MirrorRecord]:
    """Mirrors m0000, m0001, ...; region r<i mod regions>; those in `lagging` lag."""
    numbers = range(numbers) if isinstance(numbers, int) else numbers
    return [
        mirror(
            f"m{i:04d}",
            "lagging" if i in lagging else "fresh",
            serial,
            f"r{i % regions}" if regions else None,
        )
        for i in numbers
    ]
