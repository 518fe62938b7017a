"""The seams inside ``unlearning/``, read from the source with ``ast`` (every import counts: module level,
inside functions, under ``TYPE_CHECKING``): Flower stays behind ``unlearning/federation/``, methods see the
federation only through their protocol (methods/blocks.py), and the runtime table imports no runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "unlearning"
FEDERATION = PACKAGE / "federation"


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module ``path`` (below ``root``) imports, absolute; ``from a import b`` counts as ``a`` and
    ``a.b``."""
    package = ".".join(path.relative_to(root).parent.parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _is(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_sources_are_found() -> None:
    names = {p.relative_to(PACKAGE).as_posix() for p in SOURCES}
    assert {"api.py", "methods/base.py", "federation/server.py", "federation/runtimes.py"} <= names


def test_imported_modules_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    sub = tmp_path / "unlearning" / "methods"
    sub.mkdir(parents=True)
    src = sub / "toy.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from flwr.app import ArrayRecord\n"
        "def f():\n    import flwr.serverapp\n    from ..federation import server\n"
    )
    found = imported_modules(src, root=tmp_path)
    assert {"flwr.app", "flwr.serverapp", "unlearning.federation", "unlearning.federation.server"} <= found


def test_flower_is_imported_only_under_federation() -> None:
    offenders = {
        p.relative_to(PACKAGE).as_posix(): sorted(m for m in imported_modules(p) if _is(m, "flwr"))
        for p in SOURCES
        if FEDERATION not in p.parents
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if PACKAGE / "methods" in p.parents], ids=lambda p: p.name
)
def test_methods_do_not_import_the_federation(path: Path) -> None:
    bad = sorted(m for m in imported_modules(path) if _is(m, "unlearning.federation") or _is(m, "flwr"))
    assert bad == [], f"{path.name} imports {bad}; use the FederationBlocks protocol (methods/blocks.py)"


def test_the_runtime_table_imports_no_runtime() -> None:
    imports = imported_modules(FEDERATION / "runtimes.py")
    bad = sorted(m for m in imports if _is(m, "flwr") or _is(m, "unlearning.federation"))
    assert bad == []


def test_register_runtimes_fills_the_table_once() -> None:
    from unlearning.federation import register_runtimes
    from unlearning.federation.runtimes import RUNTIMES

    register_runtimes()
    first = dict(RUNTIMES)
    register_runtimes()
    assert {"in-process", "simulation", "deployment"} <= set(first)
    assert first == RUNTIMES
