"""The ledger's rules (governance/domain/ledger.py): which versions hold a data source, from the lineage."""

from __future__ import annotations

from governance.domain.ledger import (
    CONTAINS,
    NEVER,
    REMOVED,
    UNKNOWN,
    VersionFacts,
    answer,
    federation_name,
    holdings,
)

A, B = "node-0/notebook", "node-1/diary"


def facts(*rows: VersionFacts) -> dict[str, VersionFacts]:
    return {r.version: r for r in rows}


def lineage() -> dict[str, VersionFacts]:
    return facts(
        VersionFacts("init", None, "init", "released"),
        VersionFacts("t1", "init", "train", "released", trained=frozenset({A, B})),
        VersionFacts("u1", "t1", "unlearn", "released", unlearned=frozenset({A})),
        VersionFacts("t2", "u1", "train", "verified", trained=frozenset({B})),  # later training: A excluded
        VersionFacts("c1", "t1", "unlearn", "failed"),  # a category unlearning: A stays
        VersionFacts("t3", "init", "train", "candidate", trained=None),  # sources not recorded
        VersionFacts("t4", "t3", "train", "candidate", trained=frozenset({A})),
        VersionFacts("orphan", "mv-gone", "unlearn", "candidate"),
    )


def test_training_brings_a_source_in_and_unlearning_it_takes_it_out() -> None:
    h = holdings(lineage(), A)
    assert h["init"].status == NEVER
    assert (h["t1"].status, h["t1"].since) == (CONTAINS, "t1")
    assert (h["u1"].status, h["u1"].since) == (REMOVED, "u1")
    assert (h["t2"].status, h["t2"].since) == (REMOVED, "u1")  # never trained on again
    assert (h["c1"].status, h["c1"].since) == (CONTAINS, "t1")
    assert h["t3"].status == UNKNOWN
    assert (h["t4"].status, h["t4"].since) == (CONTAINS, "t4")
    assert h["orphan"].status == UNKNOWN


def test_other_sources_are_unaffected_by_an_unlearning() -> None:
    h = holdings(lineage(), B)
    assert [h[v].status for v in ("t1", "u1", "t2", "c1")] == [CONTAINS] * 4
    assert h["t2"].since == "t1"
    assert h["t4"].status == UNKNOWN  # t4's job did not train on B, and t3 did not say what it trained on


def test_a_cycle_in_the_parents_reads_as_unknown() -> None:
    h = holdings(
        facts(
            VersionFacts("x", "y", "train", "candidate", trained=frozenset()),
            VersionFacts("y", "x", "train", "candidate", trained=frozenset()),
        ),
        A,
    )
    assert {v.status for v in h.values()} == {UNKNOWN}


def test_the_answer_and_the_federation_name() -> None:
    h = holdings(lineage(), A)
    assert [answer(h[v]) for v in ("t1", "u1", "init", "t3")] == ["yes", "no", "no", "unknown"]
    assert answer(None) == "no released model"
    assert federation_name("node-0", "notebook") == A and federation_name("node-0", A) == A
