"""Protected strings (issue 19): the owner's file is parsed strictly, found where the target's records hold it
(the prefix is the text before its most frequent occurrence), and committed to with a salted hash that travels
as numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearning.verification.protected import (
    PROTECTED_FILE,
    SALT_FILE,
    ProtectedStringsError,
    commitment,
    commitment_of_file,
    from_words,
    node_commitment,
    occurrences,
    parse_protected,
    read_protected,
    to_words,
)


def test_the_file_is_one_string_a_line_with_comments_and_blank_lines_skipped() -> None:
    text = "# my secrets\n\n  falcon 2291  \nhunter22-xyz\nfalcon 2291\n"
    assert parse_protected(text) == ["falcon 2291", "hunter22-xyz"]  # stripped, deduplicated, in order
    with pytest.raises(ProtectedStringsError, match="line 2: a protected string needs at least 6"):
        parse_protected("falcon 2291\nabc\n")


def test_a_node_without_a_file_declares_nothing(tmp_path: Path) -> None:
    assert read_protected(tmp_path) == []
    (tmp_path / PROTECTED_FILE).write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ProtectedStringsError, match="not UTF-8"):
        read_protected(tmp_path)


def test_occurrences_take_the_most_frequent_prefix_and_count_every_occurrence() -> None:
    records = [
        {"source": "a", "text": "The code is falcon 2291."},
        {"source": "a", "text": "The code is falcon 2291. Again: falcon 2291"},
        {"source": "a", "text": "The code is falcon 2291."},
        {"source": "b", "text": "Elsewhere falcon 2291"},  # not the target's: not counted
    ]
    found = occurrences(["falcon 2291", "absent-string"], records, lambda r, s: r["source"] == "a")
    assert found == [("The code is ", "falcon 2291", 4)]


def test_the_commitment_is_salted_order_free_and_changes_when_a_string_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / PROTECTED_FILE
    path.write_text("falcon 2291\nhunter22-xyz\n")
    registered = commitment_of_file(path, create_salt=True)
    salt = (tmp_path / SALT_FILE).read_text().strip()
    assert len(salt) == 64 and registered == {
        "count": 2,
        "sha256": commitment(["hunter22-xyz", "falcon 2291"], salt),
    }
    assert node_commitment(tmp_path) == registered  # what the node reports, read with the same salt
    assert commitment(["falcon 2291", "hunter22-xyz"], "") != registered["sha256"]  # the salt is in it
    path.write_text("falcon 2291\n")
    assert node_commitment(tmp_path)["sha256"] != registered["sha256"]
    assert commitment_of_file(path, create_salt=True)["sha256"] == commitment(["falcon 2291"], salt)  # kept
    assert from_words(to_words(registered["sha256"])) == registered["sha256"]
    assert all(w == int(w) and 0 <= w < 2**32 for w in to_words(registered["sha256"]))


def test_a_node_checks_the_strings_its_target_covers_only(tmp_path: Path) -> None:
    from unlearning.tasks import Target
    from unlearning.verification.probes import node_protected

    (tmp_path / PROTECTED_FILE).write_text("falcon 2291\nhunter22-xyz\n")
    records = [
        {"source": "node-0/notebook", "text": "My vault phrase is falcon 2291."},
        {"source": "node-0/notebook", "text": "My vault phrase is falcon 2291."},
        {"source": "node-0/forum", "text": "login hunter22-xyz"},
    ]
    [c] = node_protected(Target("data_source", "node-0/notebook"), records, tmp_path)
    assert (c.prefix, c.secret, c.repetitions, c.protected) == ("My vault phrase is ", "falcon 2291", 2, True)
    said = Target("behaviour", examples=[{"prompt": "login ", "completion": "hunter22-xyz"}])
    assert [c.secret for c in node_protected(said, records, tmp_path)] == ["hunter22-xyz"]
    assert node_protected(Target("category", "chess"), records, tmp_path) == []  # topics hold no secret
    assert node_protected(None, records, tmp_path) == []


class _Declared:
    """A node scorer that only reports the nodes' declarations (what the probe message returns)."""

    def __init__(self, declared: dict[int, dict[str, object]]) -> None:
        self.declared = declared

    def protected_declarations(self) -> dict[int, dict[str, object]]:
        return self.declared


def test_a_registered_commitment_is_checked_against_the_nodes_that_hold_the_target_only() -> None:
    from typing import Any

    from unlearning.tasks import Target
    from unlearning.verification import VerifySpec
    from unlearning.verification.probes import Probes
    from unlearning.verification.registry import Verification

    registered = {"count": 2, "sha256": "ab" * 32}
    nodes = {
        0: {"declared": 2, "checked": 1, "forget": 5, "commitment": "ab" * 32},
        1: {"declared": 0, "checked": 0, "forget": 0, "commitment": "cd" * 32},  # holds none of the source
    }

    def problem(target: Target, declared: dict[int, dict[str, Any]], spec_target: Target) -> str | None:
        spec = VerifySpec("", "", "mv-x", [], target=spec_target.to_dict(), protected_commitment=registered)
        probes = Probes([], {}, None, "", None, scorer=_Declared(declared))  # type: ignore[arg-type]
        return Verification(spec, None, target, probes, {}).protected_problem()  # type: ignore[arg-type]

    source = Target("data_source", "node-0/notebook")
    assert problem(source, nodes, source) is None
    dropped = {**nodes, 0: {**nodes[0], "declared": 1, "commitment": "ef" * 32}}
    assert "node-0 checked 1 protected string(s)" in (problem(source, dropped, source) or "")
    other = Target("data_source", "node-1/diary")  # an earlier unlearning re-checked: another source's list
    assert problem(other, dropped, source) is None
