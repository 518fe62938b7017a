"""`make node-wheel` (node/build.py) builds one wheel that a member installs on a node's machine: the
`unlearning` package with the Flower app project, never the service (`governance`), and the node's
dependencies declared with the CPU torch pin. Built offline (`--no-deps --no-build-isolation --no-index`)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_node_wheel_holds_unlearning_and_not_the_service(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "node" / "build.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )
    wheel = Path(out.stdout.strip().splitlines()[-1])
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert wheel.parent == tmp_path and wheel.name == f"commons_node-{version}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"unlearning", f"commons_node-{version}.dist-info"}, tops
    assert not any(n.startswith("governance") for n in names)
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "unlearning").rglob("*.py")}
    assert sources <= set(names), sorted(sources - set(names))[:5]  # every module of the package
    # the FAB's app project (the components the SuperNode loads) ships with it
    assert "unlearning/federation/flwr_app/pyproject.toml" in names
    metadata = zipfile.ZipFile(wheel).read(f"commons_node-{version}.dist-info/METADATA").decode()
    requires = [
        line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    assert "torch==2.13.0" in requires and "flwr==1.41.*" in requires
    assert not any(r.startswith(("litestar", "sqlmodel", "alembic", "psycopg")) for r in requires), requires
