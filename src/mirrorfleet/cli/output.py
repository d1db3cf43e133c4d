"""What every command shares on the way out: the consoles, `--json`, and how an error
becomes one line (exit 1) instead of a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mirrorfleet.errors import UserError

err = Console(stderr=True, highlight=False, soft_wrap=True)  # errors stay one line in logs
out = Console(highlight=False)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def progress(host: str, message: str) -> None:
    err.print(f"[bold cyan]{host:>10}[/] {message}")


def warn(warnings: Iterable[str]) -> None:
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {warning}")


def print_error(exc: UserError) -> None:
    """The one-line form of an error the user can fix (escaped: a message may hold
    brackets, such as `pip install 'mirrorfleet[deploy]'`, that are not markup)."""
    err.print(f"[red]error:[/] {escape(str(exc))}")


def table(*columns: str) -> Table:
    """A borderless table with these columns, as every listing prints them."""
    result = Table(box=None)
    for column in columns:
        result.add_column(column)
    return result
