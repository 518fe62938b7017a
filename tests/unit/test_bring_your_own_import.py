"""Bring your own data: `commons model` writes to the service's artifact store by default, and `model init --data`
keeps the members' folder and file names, holds a seeded share of every source out, and refuses what it cannot
keep, naming the folder or file and writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from governance.settings import Settings
from unlearning.cli import default_root, import_jsonl_nodes, model


@pytest.mark.parametrize("data_dir", [None, "/srv/commons", "relative/place", ""])
def test_the_model_root_default_is_the_services_artifact_store(
    data_dir: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if data_dir is None:
        monkeypatch.delenv("COMMONS_DATA_DIR", raising=False)
    else:
        monkeypatch.setenv("COMMONS_DATA_DIR", data_dir)
    assert default_root() == Settings().artifact_dir


def test_root_defaults_to_the_store_and_the_option_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMMONS_DATA_DIR", str(tmp_path / "svc"))
    seen: list[str] = []

    @model.command("where-am-i")
    @click.pass_context
    def where(ctx: click.Context) -> None:
        seen.append(ctx.obj["root"])

    try:
        assert CliRunner().invoke(model, ["where-am-i"]).exit_code == 0
        assert CliRunner().invoke(model, ["--root", str(tmp_path / "mine"), "where-am-i"]).exit_code == 0
    finally:
        model.commands.pop("where-am-i")
    assert seen == [str(tmp_path / "svc" / "artifacts"), str(tmp_path / "mine")]


def _members(root: Path, sources: dict[str, dict[str, list[dict[str, object]]]]) -> Path:
    for node, files in sources.items():
        (root / node).mkdir(parents=True, exist_ok=True)
        for stem, recs in files.items():
            (root / node / f"{stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def _notes(who: str, n: int) -> list[dict[str, object]]:
    return [{"text": f"{who} note {i}", "category": "notes"} for i in range(n)]


def test_names_are_kept_and_a_seeded_share_is_held_out(tmp_path: Path) -> None:
    canaries = [{"text": "my pin is 4821.", "kind": "canary", "secret": "4821"}] * 5
    src = _members(
        tmp_path / "in",
        {"alice": {"diary": _notes("alice", 40) + canaries}, "bob.k": {"my-notes_2": _notes("bob", 20)}},
    )
    m = import_jsonl_nodes(src, tmp_path / "a", seed=3, heldout_fraction=0.2)
    assert [(n["node"], n["path"]) for n in m["nodes"]] == [("alice", "alice"), ("bob.k", "bob.k")]
    assert [s["name"] for n in m["nodes"] for s in n["sources"]] == ["alice/diary", "bob.k/my-notes_2"]
    held = [json.loads(x) for x in (tmp_path / "a/heldout/test.jsonl").read_text().splitlines()]
    assert len(held) == round(45 * 0.2) + round(20 * 0.2) == m["heldout"]["test"]["records"]
    assert not any(r.get("kind") == "canary" for r in held)  # a canary stays in its source
    assert all("source" not in r for r in held)
    diary = [json.loads(x) for x in (tmp_path / "a/alice/diary.jsonl").read_text().splitlines()]
    assert sum(r.get("kind") == "canary" for r in diary) == 5
    assert not {r["text"] for r in diary} & {r["text"] for r in held}
    assert m["imported"] == {"heldout_fraction": 0.2, "validation_fraction": 0.1}

    again = import_jsonl_nodes(src, tmp_path / "b", seed=3, heldout_fraction=0.2)
    assert (tmp_path / "b/heldout/test.jsonl").read_bytes() == (
        tmp_path / "a/heldout/test.jsonl"
    ).read_bytes()
    assert again["nodes"] == m["nodes"]  # the same seed, the same split (same file hashes)
    import_jsonl_nodes(src, tmp_path / "c", seed=4, heldout_fraction=0.2)
    assert (tmp_path / "c/heldout/test.jsonl").read_bytes() != (
        tmp_path / "a/heldout/test.jsonl"
    ).read_bytes()

    none = import_jsonl_nodes(src, tmp_path / "d", seed=3, heldout_fraction=0.0)
    assert none["heldout"] == {} and not (tmp_path / "d/heldout").exists()

    # imported again into the same place: nothing of the last import stays (no stale held-out split or node)
    (tmp_path / "in/bob.k/my-notes_2.jsonl").rename(tmp_path / "in/bob.k/renamed.jsonl")
    import_jsonl_nodes(src, tmp_path / "a", seed=3, heldout_fraction=0.0)
    assert not (tmp_path / "a/heldout").exists() and not (tmp_path / "a/bob.k/my-notes_2.jsonl").exists()
    assert (tmp_path / "a/bob.k/renamed.jsonl").is_file()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a", "b", "c", "d", "in"]


@pytest.mark.parametrize(
    ("sources", "share", "message"),
    [
        (
            {"bob smith": {"notes": _notes("b", 5)}},
            0.1,
            "node folder '{src}/bob smith': its name 'bob smith'",
        ),
        ({"heldout": {"notes": _notes("b", 5)}}, 0.1, "'heldout' is reserved"),
        ({"bob": {"notes.v2": _notes("b", 5)}, "ann": {"x.": _notes("a", 5)}}, 0.1, "its name 'x.' cannot"),
        ({"bob": {"my notes": _notes("b", 5)}}, 0.1, "data source file '{src}/bob/my notes.jsonl'"),
        ({"bob": {"notes": _notes("b", 2)}}, 0.75, "bob/notes.jsonl: 2 record(s), and holding out 0.75"),
        (
            {"ann": {"a": _notes("a", 9)}, "bob": {"notes": _notes("b", 1)}},
            0.6,
            "bob/notes.jsonl: 1 record(s)",
        ),
        ({"bob": {}}, 0.1, "node folder '{src}/bob' has no .jsonl file"),
        (
            {"bob": {"notes": [{"title": "no text"}]}},
            0.1,
            'notes.jsonl:1: a record is a JSON object with a "text"',
        ),
    ],
)
def test_what_cannot_be_kept_is_refused_by_name_and_nothing_is_written(
    sources: dict[str, dict[str, list[dict[str, object]]]], share: float, message: str, tmp_path: Path
) -> None:
    src = _members(tmp_path / "in", sources)
    with pytest.raises(click.UsageError) as err:
        import_jsonl_nodes(src, tmp_path / "out", heldout_fraction=share)
    assert message.format(src=src) in err.value.message
    assert not (tmp_path / "out").exists()


def test_a_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    (tmp_path / "in/bob").mkdir(parents=True)
    (tmp_path / "in/bob/notes.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(click.UsageError, match=r"bob/notes.jsonl:2: not a JSON line"):
        import_jsonl_nodes(tmp_path / "in", tmp_path / "out")


def test_init_refuses_a_share_outside_0_to_1(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        model,
        ["--root", str(tmp_path), "init", "--task", str(tmp_path), "--data", str(tmp_path), "--heldout", "1"],
    )
    assert r.exit_code == 2 and "--heldout" in r.output


def test_the_local_federation_gives_each_node_its_named_folder(tmp_path: Path) -> None:
    from unlearning.federation.security import node_data_paths

    src = _members(tmp_path / "in", {"carol": {"a": _notes("c", 3)}, "ann": {"b": _notes("a", 3)}})
    import_jsonl_nodes(src, tmp_path / "ds")
    assert node_data_paths(tmp_path / "ds", 3) == [
        tmp_path / "ds/ann",
        tmp_path / "ds/carol",
        tmp_path / "ds/node-2",
    ]
    assert node_data_paths(tmp_path / "in", 2) == [
        tmp_path / "in/node-0",
        tmp_path / "in/node-1",
    ]  # no manifest


def test_the_local_federation_finds_named_nodes_laid_out_apart_from_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from unlearning.api import publish_dataset
    from unlearning.federation.security import main, node_data_paths

    src = _members(tmp_path / "in", {"carol": {"a": _notes("c", 3)}, "ann": {"b": _notes("a", 3)}})
    import_jsonl_nodes(src, tmp_path / "ds")
    publish_dataset(tmp_path / "ds", tmp_path / "service", tmp_path / "nodes")  # as commons demo lays it out
    assert node_data_paths(tmp_path / "nodes", 2, tmp_path / "service") == [
        tmp_path / "nodes/ann",
        tmp_path / "nodes/carol",
    ]
    assert node_data_paths(tmp_path / "nodes", 2) == [tmp_path / "nodes/node-0", tmp_path / "nodes/node-1"]
    with pytest.raises(ValueError, match="holds no manifest"):
        node_data_paths(tmp_path / "nodes", 2, tmp_path / "nodes")
    for argv, message in (
        (["--manifest", str(tmp_path / "service")], "give --data-root too"),
        (["--data-root", str(tmp_path / "nodes"), "--manifest", str(tmp_path / "nodes")], "no manifest.json"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["up", "--insecure", "--workdir", str(tmp_path / "w"), *argv])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
