"""The pre-vote warning counts the protected strings an owner registered (issue 19): a data source whose
owner committed to a non-empty protected.txt is not warned that its canary and extraction tests cannot be
measured for want of manifest canaries (its node checks the strings like canaries); one with neither is."""

from __future__ import annotations

import json
from pathlib import Path

from unlearning.contract import cannot_measure
from unlearning.measurability import dataset_facts

SECRET_TESTS = ("canary_exposure", "canary_exposure_pvalue", "extraction_rate", "sampled_extraction_rate")


def _dataset(root: Path) -> Path:
    sources = [{"name": "bob/chess", "records": 12}]
    manifest = {
        "task": "community-lm",
        "nodes": [{"node": "bob", "path": "bob", "sources": sources}],
        "canaries": [
            {"inserted": True, "prefix": "Ann's pin is ", "secret": "4821", "source": "alice/notes"}
        ],
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_a_registered_protected_list_lifts_the_no_canary_warning(tmp_path: Path) -> None:
    root, chess = _dataset(tmp_path), {"kind": "data_source", "value": "bob/chess"}
    bare = dataset_facts(root, chess)
    assert bare.canaries == 0 and bare.protected is None
    for name in SECRET_TESTS:  # no canary, no commitment: warned
        assert cannot_measure(name, bare), name
    committed = dataset_facts(root, chess, protected=3)
    assert committed.protected == 3
    assert {name: cannot_measure(name, committed) for name in SECRET_TESTS} == dict.fromkeys(SECRET_TESTS)
    empty = dataset_facts(root, chess, protected=0)  # a commitment to an empty list protects nothing
    assert all(cannot_measure(name, empty) for name in SECRET_TESTS)


def test_protected_strings_count_only_for_a_data_source_and_never_hide_other_reasons(tmp_path: Path) -> None:
    root = _dataset(tmp_path)
    category = dataset_facts(root, {"kind": "category", "value": "chess"}, protected=3)
    assert category.protected is None and "category target holds none" in (
        cannot_measure("canary_exposure", category) or ""
    )
    digits = dataset_facts(root, {"kind": "data_source", "value": "bob/chess"}, "digits", protected=3)
    assert "needs a language model" in (cannot_measure("extraction_rate", digits) or "")
    no_manifest = dataset_facts(tmp_path / "missing", {"kind": "data_source", "value": "x/y"}, protected=2)
    assert no_manifest.protected == 2
