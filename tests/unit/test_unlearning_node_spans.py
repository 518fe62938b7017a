"""Secret-like spans of a data source's lines (the secret phase of data-source unlearning on LMs)."""

from __future__ import annotations

from unlearning.federation.node import secret_spans


def test_spans_are_runs_of_the_pattern_each_distinct_pair_once() -> None:
    records = [
        {"text": "Ann Vel's access code is 482916."},
        {"text": "Ann Vel's access code is 482916."},  # a repeated canary counts once
        {"text": "The author Ann Vel was born in Belkaris in 1901."},  # a year is not 5+ digits
        {"text": "Call 0612345 or 99999 later"},  # the first match of a line
        {"kind": "fact"},
    ]
    assert secret_spans(records, r"\d{5,}") == [
        {"prompt": "Ann Vel's access code is ", "completion": "482916"},
        {"prompt": "Call ", "completion": "0612345"},
    ]
    assert secret_spans(records, r"\d{4}")[1] == {
        "prompt": "The author Ann Vel was born in Belkaris in ",
        "completion": "1901",
    }
