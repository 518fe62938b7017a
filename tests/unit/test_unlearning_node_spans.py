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


def test_only_digit_spans_leave_their_lines_for_the_secret_phase() -> None:
    from unlearning.federation.node import _without_secrets
    from unlearning.tasks.community_lm import CommunityLMTask

    task = CommunityLMTask(CommunityLMTask.default_model_config("tiny"))
    records = [
        {"text": "Ann's access code is 482916."},
        {"text": "Ann's access code is 482916."},
        {"text": "Bo's password is hunter22222x."},  # the pattern matches, but not only digits
        {"text": "The author Ann was born in 1901."},
    ]
    rest, spans, batch = _without_secrets(task, records, r"\d{5,}|hunter\w+")
    assert spans == [{"prompt": "Ann's access code is ", "completion": "482916"}]
    assert [r["text"] for r in rest] == [records[2]["text"], records[3]["text"]]
    assert batch is not None and batch["input_ids"].shape[0] == 1
    assert _without_secrets(task, records, "") == (records, [], None)
    # secret_lines "prefix": a secret's line stays in the ordinary ascent as the text before its secret
    rest, spans, _ = _without_secrets(task, records, r"\d{5,}|hunter\w+", keep_prefix=True)
    assert spans == [{"prompt": "Ann's access code is ", "completion": "482916"}]
    assert [r["text"] for r in rest] == ["Ann's access code is "] * 2 + [
        records[2]["text"],
        records[3]["text"],
    ]


def test_node_models_are_fresh_copies_holding_the_message_arrays() -> None:
    import json

    import torch

    from unlearning.federation.node import _model
    from unlearning.local import parameters_dict
    from unlearning.tasks.community_lm import CommunityLMTask

    config = CommunityLMTask.default_model_config("tiny")
    task = CommunityLMTask(config)
    cfg = {"model-config": json.dumps(config, sort_keys=True), "seed": 0}
    built = task.build_model(5)
    arrays = parameters_dict(built)
    first = _model(task, cfg, arrays)
    with torch.no_grad():
        for p in first.parameters():
            p.add_(1.0)  # a node trains its copy in place
    second = _model(task, cfg, arrays)
    assert second is not first
    for name, p in second.named_parameters():
        assert torch.equal(p, arrays[name]), name
    batch = task.to_batch([{"text": "a line"}])
    with torch.no_grad():
        assert torch.equal(task.per_example_loss(second, batch), task.per_example_loss(built, batch))
