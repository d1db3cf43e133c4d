"""status.json and history.json: the monitor's view for people (the status page
renders them in the browser) and for machines (same file, same fields).

Written atomically each round, so nginx never serves half a file. History keeps
one sample per `step` seconds, bounded, and survives restarts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirrorfleet.tree.files import atomic_write

STATUS = "status.json"
HISTORY = "history.json"


@dataclass
class History:
    step: int
    limit: int
    samples: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path, step: int, limit: int) -> History:
        try:
            samples = json.loads((directory / HISTORY).read_text())["samples"]
            if not isinstance(samples, list):
                raise ValueError("samples is not a list")
        except (OSError, ValueError, KeyError, TypeError):
            samples = []
        return cls(step, limit, samples[-limit:])

    def add(self, now: float, head: int, mirrors: Sequence[Mapping[str, Any]]) -> bool:
        """Record a sample if a step has passed since the last; True when one was added."""
        if self.samples and now - self.samples[-1]["t"] < self.step:
            return False
        self.samples.append(
            {
                "t": int(now),
                "head": head,
                "mirrors": {
                    m["label"]: [m["state"], m["lag_serials"], m["lag_seconds"]] for m in mirrors
                },
            }
        )
        del self.samples[: -self.limit]
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "samples": self.samples}


def write(directory: Path, status: Mapping[str, Any], history: History | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / STATUS, _json(status), durable=False)
    if history is not None:
        atomic_write(directory / HISTORY, _json(history.as_dict()), durable=False)


def _json(data: object) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
