"""``commons verify --protected-commitment COUNT:SHA256`` (issue 19): an operator verifying by hand checks the
nodes' protected.txt against the commitment registered with the data source, as the worker does; a malformed
value is refused before anything runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

import unlearning.verification
from unlearning.verification.cli import verify

GRIDS: list[Any] = []  # the in-process grid each call was given (None: the nodes beside the manifest)
DIGEST = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"  # upper case is accepted


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "mv-x",
        "--artifacts",
        str(tmp_path),
        "--dataset",
        str(tmp_path),
        "--tests",
        str(_tests(tmp_path)),
        *extra,
    ]


def _tests(tmp_path: Path) -> Path:
    path = tmp_path / "tests.json"
    path.write_text('[{"metric": "extraction_rate", "comparator": "<=", "threshold": 0.0}]')
    return path


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The specs verify() was called with (nothing is measured)."""
    specs: list[Any] = []
    grids = GRIDS
    grids.clear()

    def fake(spec: Any, progress: Any = None, grid: Any = None) -> Any:
        specs.append(spec)
        grids.append(grid)
        return SimpleNamespace(tests=[], summary="1 of 1 tests passed", passed=True)

    monkeypatch.setattr(unlearning.verification, "verify", fake)
    return specs


@pytest.mark.parametrize(
    "value",
    [
        "3",
        "three:" + "a" * 64,
        "3:" + "a" * 63,
        "3:" + "g" * 64,
        ":" + "a" * 64,
        "-1:" + "a" * 64,
        "3=" + "a" * 64,
    ],
)
def test_a_malformed_commitment_is_refused_with_exit_code_2(
    tmp_path: Path, seen: list[Any], value: str
) -> None:
    r = CliRunner().invoke(
        verify, _args(tmp_path, "--data-source", "bob/chess", "--protected-commitment", value)
    )
    assert r.exit_code == 2, r.output
    assert "Invalid value for '--protected-commitment'" in r.output and "is not COUNT:SHA256" in r.output
    assert seen == []  # nothing ran


def test_a_commitment_without_a_data_source_is_refused(tmp_path: Path, seen: list[Any]) -> None:
    r = CliRunner().invoke(
        verify, _args(tmp_path, "--category", "chess", "--protected-commitment", f"3:{DIGEST}")
    )
    assert r.exit_code == 2 and "goes with --data-source" in r.output and seen == []


def test_the_commitment_reaches_the_spec_as_the_worker_passes_it(tmp_path: Path, seen: list[Any]) -> None:
    r = CliRunner().invoke(
        verify, _args(tmp_path, "--data-source", "bob/chess", "--protected-commitment", f"3:{DIGEST}")
    )
    assert r.exit_code == 0, r.output
    (spec,) = seen
    assert spec.protected_commitment == {"count": 3, "sha256": DIGEST.lower()}
    assert spec.target == {"kind": "data_source", "value": "bob/chess"}
    CliRunner().invoke(verify, _args(tmp_path, "--data-source", "bob/chess"))
    assert seen[1].protected_commitment is None  # none given: the nodes' lists are used as they are


def test_node_data_dir_gives_each_node_its_own_folder_apart_from_the_manifest(
    tmp_path: Path, seen: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from unlearning.api import init_dataset, publish_dataset

    monkeypatch.delenv("COMMONS_NODE_DATA_DIR", raising=False)
    init_dataset("digits", tmp_path / "ds", nodes=2, seed=0)
    publish_dataset(tmp_path / "ds", tmp_path / "service", tmp_path / "nodes")  # as commons demo lays it out
    args = ["mv-x", "--artifacts", str(tmp_path), "--dataset", str(tmp_path / "service")]
    args += ["--tests", str(_tests(tmp_path)), "--category", "3"]
    r = CliRunner().invoke(verify, [*args, "--node-data-dir", str(tmp_path / "nodes")])
    assert r.exit_code == 0, r.output
    paths = [c.node_config["data-path"] for c in GRIDS[0]._contexts.values()]
    assert paths == [str(tmp_path / "nodes" / "node-0"), str(tmp_path / "nodes" / "node-1")]
    assert CliRunner().invoke(verify, args).exit_code == 0 and GRIDS[1] is None  # beside the manifest
    r = CliRunner().invoke(verify, [*args, "--node-data-dir", str(tmp_path / "absent")])
    assert r.exit_code == 2 and "does not exist" in r.output and len(seen) == 2
