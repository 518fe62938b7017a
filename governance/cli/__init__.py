"""The ``commons`` command line.

common.py    settings, the database context, the API client context, error mapping, printing
operator.py  operator commands on the database: serve, worker, webhook, demo, db, member, token
member.py    member commands over the JSON API: proposal ..., vote
gate.py      the release gate and provenance bundles over the JSON API: gate, release
audit.py     the audit log: verify offline; prove, checkpoint, export from the database or the API

Every command is a click command in its module, added to ``main`` here. Member, gate and audit commands reach
the service through the one client, governance/client.py. Groups that import more than click and httpx
(audit, gate, release, and the ML library's model and verify) load on first use, so that `commons vote` and
`commons gate` import neither torch nor the database layer.
"""

from __future__ import annotations

import os

import click

from governance.cli import member, operator

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


class LazyGroup(click.Group):
    """A group whose commands named in ``lazy`` (name -> (module, attribute)) are imported on first use."""

    lazy = {
        "audit": ("governance.cli.audit", "audit"),
        "model": ("unlearning.cli", "model"),
        "gate": ("governance.cli.gate", "gate"),
        "release": ("governance.cli.gate", "release"),
        "verify": ("unlearning.verification.cli", "verify"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name]
            cmd: click.Command = getattr(__import__(module, fromlist=[attr]), attr)
            return cmd
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="commons-unlearning")
def main() -> None:
    """Commons: decide in the open what a federated model must forget, make it forget, prove it."""


for _command in (
    # operator commands, on the database
    operator.serve,
    operator.worker,
    operator.webhook,
    operator.demo,
    operator.db,
    operator.member,
    operator.token,
    # member commands, over the API
    member.proposal,
    member.vote,
):
    main.add_command(_command)
