"""docs/audit.md stays honest: every `commons audit` command and every audit API route is documented."""

from __future__ import annotations

from pathlib import Path

from governance.cli.audit import audit
from governance.web.api.audit import AuditController

DOC = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()


def test_every_cli_command_is_documented() -> None:
    for name in audit.commands:
        assert f"commons audit {name}" in DOC, name


def test_every_api_route_is_documented() -> None:
    for value in vars(AuditController).values():
        paths = getattr(value, "paths", None)
        if not paths:
            continue
        for path in paths:
            documented = (AuditController.path + path).split("{")[0]
            assert documented in DOC, documented
