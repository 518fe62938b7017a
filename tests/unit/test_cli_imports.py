"""`commons vote` and `commons gate` stay light: they load neither torch nor the database layer (the heavy
command groups load on first use), and `python -m governance.cli` is the `commons` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "flwr", "sqlalchemy", "sqlmodel", "alembic", "governance.db", "governance.services")


@pytest.mark.parametrize(
    "args",
    [
        ["vote", "--help"],
        ["gate", "--help"],
        ["release", "bundle", "--help"],
        ["gate", "mv-x", "--server", "http://127.0.0.1:9"],
    ],
)
def test_light_commands_import_neither_torch_nor_the_database(args: list[str]) -> None:
    code = f"""
import sys
sys.modules["torch"] = None
sys.modules["flwr"] = None
from click.testing import CliRunner
from governance.cli import main
r = CliRunner().invoke(main, {args!r})
assert r.exit_code in (0, 3), r.output
heavy = sorted(m for m in sys.modules if sys.modules[m] is not None and m.startswith({HEAVY!r}))
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


def test_python_dash_m_runs_the_commons_group() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "governance.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("audit", "gate", "proposal", "release", "serve", "vote", "worker"):
        assert f"  {name} " in out.stdout, name
