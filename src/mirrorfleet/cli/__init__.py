"""The `mirrorfleet` command. Errors the user can fix print one line and exit 1.

One module per command group; each builds its own click group or command and this
module only assembles them, so no command module imports this one (and nothing
outside mirrorfleet.cli imports the CLI at all).
"""

from __future__ import annotations

import sys

import click

from mirrorfleet import __version__
from mirrorfleet.cli import (
    agent,
    client,
    content,
    dns,
    keys,
    lab,
    monitor,
    origin,
    proxy,
    verify,
)
from mirrorfleet.cli.output import err, print_error
from mirrorfleet.errors import UserError

# the commands users run, which client.toml gives their defaults
CLIENT_COMMANDS = (*client.COMMANDS, proxy.proxy)
CLIENT_NAMES = frozenset(str(c.name) for c in CLIENT_COMMANDS)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirrorfleet")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run a fleet of package mirrors as code."""
    if ctx.invoked_subcommand in CLIENT_NAMES:
        # client.toml gives the client commands their defaults (client/settings.py)
        ctx.default_map = client.defaults_from_files(CLIENT_NAMES)


for _command in (
    lab.lab,
    keys.keys,
    origin.origin,
    verify.verify,
    content.demo_content,
    agent.agent,
    monitor.monitor,
    dns.dns_group,
    *client.COMMANDS,
    *proxy.COMMANDS,
):
    cli.add_command(_command)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except UserError as exc:
        print_error(exc)
        sys.exit(1)
