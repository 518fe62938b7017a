"""The ``commons`` command line.

common.py    settings, the database context, the API client context, error mapping, printing
operator.py  operator commands on the database: serve, worker, webhook, demo, db, member, token
member.py    member commands over the JSON API: proposal ..., vote
registry.py  data sources and the model registry over the JSON API (adopting a base version: on the database)
probes.py    evaluation probes over the JSON API: probe add | list | show | accept | reject
gate.py      the release gate and provenance bundles over the JSON API: gate, release
audit.py     the audit log: verify offline; prove, checkpoint, export from the database or the API

Every command is a click command in its module, added to ``main`` here. Member, gate and audit commands reach
the service through the one client, governance/client.py. Groups that import more than click and httpx
(audit, gate, release, and the ML library's model and verify) load on first use, so that `commons vote` and
`commons gate` import neither torch nor the database layer.

Exit codes (governance/cli/common.py): 0 done, 1 refused, 3 error (usage errors included); an unexpected
exception ends in one line, never a traceback (`commons --traceback ...` shows it).
"""

from __future__ import annotations

import os

import click

from governance.cli import member, operator, probes, registry
from governance.cli.common import CommonsGroup

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


class LazyGroup(CommonsGroup):
    """A group whose commands named in ``lazy`` (name -> (module, attribute)) are imported on first use; its
    usage errors exit 3 and an unexpected exception is one line (exit 3)."""

    catch_all = True

    lazy = {
        "audit": ("governance.cli.audit", "audit"),
        "delegation": ("governance.cli.delegation", "delegation"),
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
@click.option(
    "--traceback", is_flag=True, help="Show the traceback of an unexpected error (for bug reports)."
)
def main(traceback: bool) -> None:
    """Commons: decide in the open what a federated model must forget, make it forget, prove it.

    Commands that call the service use COMMONS_API_URL (default http://COMMONS_HOST:COMMONS_PORT) and
    COMMONS_API_TOKEN; operator commands use the database (COMMONS_DATABASE_URL, COMMONS_DATA_DIR). Exit 0 done,
    1 refused, 3 error (`commons gate`: 1 deny, 2 pending).
    """


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
    probes.probe,
    registry.data_source,
    registry.registry,
):
    main.add_command(_command)
