"""The service layer's seams, read from the source with ``ast`` (imports inside functions included): the
service modules import each other without a circle, only the lifecycle writes a proposal's state, and the
service's domain stays free of frameworks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "governance" / "services"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _service_graph() -> dict[str, set[str]]:
    names = {p.stem for p in SERVICES.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name in names:
        found = _imports(SERVICES / f"{name}.py")
        graph[name] = {n for n in names if f"governance.services.{n}" in found and n != name}
    return graph


def test_service_modules_import_each_other_without_a_circle() -> None:
    graph = _service_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    assert graph["lifecycle"] <= {"audit", "context", "events", "job_queue", "registry"}
    assert "lifecycle" not in graph["registry"] | graph["job_queue"] | graph["events"]


def test_only_the_lifecycle_applies_decisions() -> None:
    for path in sorted((ROOT / "governance").rglob("*.py")):
        if path.name == "lifecycle.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("apply_decision", "load_proposal"):
                raise AssertionError(f"{path}: defines {node.name}, which belongs to services/lifecycle.py")
            if isinstance(node, ast.Attribute) and node.attr == "apply_decision":
                raise AssertionError(f"{path}:{node.lineno}: applies a decision outside the lifecycle")


def test_the_domain_imports_no_framework() -> None:
    banned = ("litestar", "sqlmodel", "sqlalchemy", "torch", "flwr", "governance.services", "governance.db")
    for path in sorted((ROOT / "governance" / "domain").glob("*.py")):
        bad = [m for m in _imports(path) if m.startswith(banned)]
        assert not bad, f"{path.name} imports {bad}"
