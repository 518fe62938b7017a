"""Where a node finds its data when the nodes' folders live apart from the dataset's manifest (the demo's
layout: COMMONS_DATA_DIR/nodes/<node>/ for the nodes, only the published manifest at the service): the
in-process grid gives each node ``<node_data_dir>/<its manifest path>`` as its data-path, a simulation's
virtual SuperNodes get run config ``node-data-dir``, and the service passes its setting down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Context, RecordDict

from governance.jobs.worker import flower_settings
from governance.settings import Settings
from unlearning.api import publish_dataset, published_layout
from unlearning.data import MANIFEST, node_dirs, write_dataset
from unlearning.federation import node
from unlearning.federation.apps import _node_config
from unlearning.federation.local_grid import LocalGrid


def small(root: Path) -> dict[str, Any]:
    return write_dataset(
        root,
        task="digits",
        seed=0,
        nodes={
            "alice": {"notes": [{"x": [1.0], "category": "1"}]},
            "bob": {"notes": [{"x": [2.0], "category": "2"}]},
        },
        validation={"alice": [], "bob": []},
        heldout={"test": [{"x": [3.0], "category": "3"}]},
        extra={"canaries": [{"secret": "1234", "inserted": True}, {"secret": "5678", "inserted": False}]},
    )


def test_publish_moves_each_node_to_its_folder_and_keeps_only_what_is_published(tmp_path: Path) -> None:
    small(tmp_path / "gen")
    published = publish_dataset(tmp_path / "gen", tmp_path / "service", tmp_path / "nodes")
    assert not (tmp_path / "gen").exists()
    assert sorted(p.name for p in (tmp_path / "service").iterdir()) == ["heldout", MANIFEST]
    assert json.loads((tmp_path / "service" / MANIFEST).read_text()) == published
    assert published["canaries"] == [{"secret": "5678", "inserted": False}]  # a member's secret stays theirs
    assert node_dirs(tmp_path / "service", tmp_path / "nodes") == [
        tmp_path / "nodes" / n for n in ("alice", "bob")
    ]
    assert (tmp_path / "nodes" / "bob" / "notes.jsonl").is_file()
    # nothing is moved over what is there already
    again = small(tmp_path / "again")
    with pytest.raises(ValueError, match="already holds a dataset manifest"):
        publish_dataset(tmp_path / "again", tmp_path / "service", tmp_path / "other")
    with pytest.raises(ValueError, match="a node's data folder already exists"):
        publish_dataset(tmp_path / "again", tmp_path / "service2", tmp_path / "nodes")
    assert (tmp_path / "again" / "alice").is_dir() and not (tmp_path / "service2").exists()
    # the same dataset, already laid out, is recognised; one changed file is not
    assert published_layout(tmp_path / "service", tmp_path / "nodes", again) == published
    (tmp_path / "nodes" / "bob" / "notes.jsonl").write_text('{"x": [9.0]}\n')
    assert published_layout(tmp_path / "service", tmp_path / "nodes", again) is None


def test_each_runtime_gives_a_node_its_own_folder(tmp_path: Path) -> None:
    small(tmp_path / "gen")
    publish_dataset(tmp_path / "gen", tmp_path / "service", tmp_path / "nodes")
    grid = LocalGrid.for_dataset(None, tmp_path / "service", node_root=tmp_path / "nodes")  # type: ignore[arg-type]
    paths = [c.node_config["data-path"] for c in grid._contexts.values()]
    assert paths == [str(tmp_path / "nodes" / "alice"), str(tmp_path / "nodes" / "bob")]
    # a simulation's virtual SuperNode: partition id only, the folders from the run config
    ctx = Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 1, "num-partitions": 2},
        state=RecordDict(),
        run_config={"dataset-dir": str(tmp_path / "service"), "node-data-dir": str(tmp_path / "nodes")},
    )
    assert node.data_path(_node_config(ctx), None) == (tmp_path / "nodes" / "bob", 1)
    ctx.run_config = {"dataset-dir": str(tmp_path / "service")}  # without it: beside the manifest
    assert node.data_path(_node_config(ctx), None) == (tmp_path / "service" / "bob", 1)


def test_the_service_passes_where_its_nodes_data_is(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert (
        s.effective_node_data_dir is None and flower_settings(s).node_data_dir is None
    )  # beside the manifest
    (tmp_path / "nodes").mkdir()  # the demo's layout
    assert flower_settings(s).node_data_dir == str((tmp_path / "nodes").resolve())
    elsewhere = Settings(data_dir=tmp_path, node_data_dir=tmp_path / "members")
    assert flower_settings(elsewhere).node_data_dir == str((tmp_path / "members").resolve())
