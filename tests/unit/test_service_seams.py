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


def test_the_service_reads_the_library_through_the_contract_and_the_api_only() -> None:
    allowed = ("unlearning.contract", "unlearning.api")
    for path in sorted((ROOT / "governance").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = (
                    [f"unlearning.{a.name}" for a in node.names]
                    if node.module == "unlearning"
                    else [node.module]
                )
            bad = [n for n in names if n.startswith("unlearning") and not n.startswith(allowed)]
            assert not bad, f"{path.relative_to(ROOT)}:{node.lineno} imports {bad}"


def test_the_web_process_loads_neither_torch_nor_flower(tmp_path: Path) -> None:
    """The app, its API and UI modules, the contract and the api module are importable and buildable with
    torch and Flower unimportable (the web process lists methods and metrics from the contract)."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules["torch"] = None
sys.modules["flwr"] = None
from governance.settings import Settings
from governance.web.app import create_app
import governance.service, governance.cli, unlearning.api
create_app(Settings(data_dir={str(tmp_path)!r}, environment="test", secret_key="x" * 40))
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
