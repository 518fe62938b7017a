"""Build the node wheel (``commons_node-<version>-py3-none-any.whl``): the ``unlearning`` package alone.

    .venv/bin/python node/build.py [--out dist]        # what `make node-wheel` runs

Copies node/pyproject.toml (with the project's version) and ``unlearning/`` into a scratch directory and runs
``pip wheel --no-deps --no-build-isolation`` there: no download, no dependency resolution, a few seconds.
Prints the wheel's path.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(out: Path) -> Path:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="commons-node-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(
            ROOT / "unlearning", src / "unlearning", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        project = (ROOT / "node" / "pyproject.toml").read_text()
        (src / "pyproject.toml").write_text(
            re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', project, count=1)
        )
        (src / "README.md").write_text("Commons node package: see docs/federation.md.\n")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                str(Path(tmp) / "dist"),
                str(src),
            ],
            check=True,
            cwd=tmp,
        )
        (wheel,) = (Path(tmp) / "dist").glob("commons_node-*.whl")
        target = out / wheel.name
        shutil.copy2(wheel, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    print(build(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
