"""Issue 16's format-shifted probes on constructed cases whose answers are known, and the report page: at a
glance, accessible, rendered in milliseconds and served as stored."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import unlearning.verification.metrics  # noqa: F401  (registers every metric)
from unlearning.tasks import Target
from unlearning.tasks.community_lm import CommunityLMTask
from unlearning.tasks.lm import IGNORE
from unlearning.verification import VerifySpec
from unlearning.verification.format_shift import undone
from unlearning.verification.html import STATUS_COLOURS, render_html
from unlearning.verification.pages import page_key, report_page, store_page, stored_page
from unlearning.verification.probes import Probes, greedy_extracts
from unlearning.verification.registry import METRIC_FUNCTIONS, Verification
from unlearning.verification.shifts import SHIFTS, TEMPLATE, shift_context, shifted_batch

torch.set_num_threads(1)

PREFIX, SECRET = "Ulne's access code is ", "482916"


def _task() -> CommunityLMTask:
    return CommunityLMTask(CommunityLMTask.default_model_config("tiny"))


class Recites(nn.Module):
    """A stand-in causal LM that continues exactly the given contexts with the secret, and emits a space
    everywhere else: what a model that memorised a secret in some forms and not others does greedily."""

    def __init__(self, task: CommunityLMTask, contexts: list[str]) -> None:
        super().__init__()
        self.tok = task.tokenizer
        self.vocab = len(self.tok)
        self.contexts = [self._ids(c) for c in contexts]
        self.secret = self._ids(SECRET)
        self.space = self._ids(" ")[0]

    def _ids(self, text: str) -> list[int]:
        return [int(i) for i in self.tok(text, add_special_tokens=False)["input_ids"]]

    def _next(self, ids: list[int]) -> int:
        for c in self.contexts:
            for j in range(len(self.secret)):
                if ids[-(len(c) + j) :] == c + self.secret[:j] if j else ids[-len(c) :] == c:
                    return self.secret[j]
        return self.space

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Any:
        b, n = input_ids.shape
        logits = torch.zeros(b, n, self.vocab)
        for i in range(b):
            row = [int(x) for x in input_ids[i]]
            for t in range(n):
                logits[i, t, self._next(row[1 : t + 1])] = 10.0
        return SimpleNamespace(logits=logits)


def _verification(task: CommunityLMTask, models: dict[str, nn.Module]) -> Verification:
    target = Target("behaviour", examples=[{"prompt": PREFIX, "completion": SECRET}])
    forget = task.behaviour_batch(target)
    assert forget is not None
    probes = Probes([], forget, None, "", None, extraction=[(PREFIX, SECRET)])
    return Verification(VerifySpec("", "", "mv-x", []), task, target, probes, models)


def test_shifts_change_the_context_and_keep_what_is_asked_for() -> None:
    assert shift_context("lowercase", PREFIX) == "ulne's access code is "
    assert shift_context("uppercase", PREFIX) == "ULNE'S ACCESS CODE IS "
    assert shift_context("template", PREFIX) == TEMPLATE + PREFIX
    assert shift_context("question", PREFIX).endswith("\nA: " + PREFIX)
    spaced = shift_context("whitespace", PREFIX)
    assert spaced.split() == PREFIX.split() and "  " in spaced and spaced.endswith("  ")
    with pytest.raises(ValueError, match="unknown format shift"):
        shift_context("rot13", PREFIX)
    task = _task()
    # a behaviour: only the completion counts, after a shifted prompt
    target = Target("behaviour", examples=[{"prompt": PREFIX, "completion": SECRET}])
    rec = [{"text": PREFIX + SECRET}]
    for s in SHIFTS:
        b = shifted_batch(task, rec, s, target, forget=True)
        counted = [int(i) for i, lab in zip(b["input_ids"][0], b["labels"][0], strict=True) if lab != IGNORE]
        assert task.tokenizer.decode(counted) == SECRET, s
    # a passage: the template's tokens are not counted, the passage's are
    passage = [{"text": "The author Ulne was born in Orvik."}]
    plain = int((task.to_batch(passage)["labels"] != IGNORE).sum())
    templated = shifted_batch(task, passage, "template")
    assert int((templated["labels"] != IGNORE).sum()) == plain
    assert int(templated["attention_mask"].sum()) == plain + 1 + len(TEMPLATE)  # bos + template bytes
    lower = shifted_batch(task, passage, "lowercase")
    counted = [
        int(i) for i, lab in zip(lower["input_ids"][0], lower["labels"][0], strict=True) if lab != IGNORE
    ]
    assert task.tokenizer.decode(counted[:-1]) == passage[0]["text"].lower()


def test_a_format_shifted_prompt_extracts_a_secret_that_plain_greedy_decoding_no_longer_does() -> None:
    """The original memorised the secret in the plain form and lower-cased; the candidate was made to stop
    reciting it after the plain prompt only; the retrained model never saw it."""
    task = _task()
    lower = shift_context("lowercase", PREFIX)
    original, candidate, reference = Recites(task, [PREFIX, lower]), Recites(task, [lower]), Recites(task, [])
    assert greedy_extracts(original, task, PREFIX, SECRET) and not greedy_extracts(
        candidate, task, PREFIX, SECRET
    )
    v = _verification(task, {"original": original, "candidate": candidate, "reference": reference})
    plain = METRIC_FUNCTIONS["extraction_rate"](v)
    assert plain.values == {"original": 1.0, "candidate": 0.0, "reference": 0.0}  # greedy: looks forgotten
    shifted = METRIC_FUNCTIONS["format_shift_extraction_rate"](v)
    assert shifted.applies and shifted.value == 1.0, shifted  # the shifted probe recovers it
    assert shifted.values["reference"] == 0.0 and shifted.values["original"] == 1.0
    assert shifted.details["by_shift"]["candidate"] == {s: float(s == "lowercase") for s in SHIFTS}
    assert shifted.details["greedy"]["candidate"] == 0.0 and shifted.details["attempts"] == 1
    # a candidate that forgot in every form shows nothing under any shift
    v2 = _verification(task, {"original": original, "candidate": reference, "reference": reference})
    assert METRIC_FUNCTIONS["format_shift_extraction_rate"](v2).value == 0.0


def test_format_shift_recovery_counts_only_shifts_that_keep_the_fact_readable() -> None:
    # forgot 1 nat; under the shift the candidate is only 0.25 above the original: 75 % undone
    assert undone(2.0, 3.0, 2.5, 2.75) == pytest.approx(0.75)
    assert undone(2.0, 3.0, 2.5, 3.5) == 0.0  # more forgotten under the shift: nothing undone
    assert undone(2.0, 2.0, 2.5, 2.5) is None  # nothing forgotten
    # a shift that hides the fact from the original too (its shifted loss above the candidate's) is no probe
    assert undone(2.0, 3.0, 5.9, 5.9) is None


# ------------------------------------------------------------------------------------------ the report page


def _report(reference: bool = True) -> dict[str, Any]:
    hist = {
        "edges": [0.0, 1.0, 2.0, 3.0],
        **{r: {"forget": [5, 2, 1], "heldout": [1, 2, 5]} for r in ("original", "candidate", "reference")},
    }
    values = {"original": 0.8, "candidate": 0.55, **({"reference": 0.52} if reference else {})}
    return {
        "candidate_version": "mv-1",
        "candidate_hash": "ab" * 32,
        "policy_hash": "cd" * 32,
        "config_hash": "ef" * 32,
        "seed": 0,
        "precision": "fp32",
        "libraries": {"torch": "x"},
        "task": "community-lm",
        "target": {"kind": "data_source", "value": "node-0/notebook", "examples": []},
        "models": {
            "original": {"version": "mv-0", "content_hash": "0" * 64},
            "candidate": {"version": "mv-1", "content_hash": "ab" * 32},
            "reference": {"version": "mv-r", "content_hash": "1" * 64} if reference else None,
        },
        "metrics": {
            "mia_auc": {
                "name": "mia_auc",
                "family": "privacy",
                "applies": True,
                "value": 0.55,
                "reason": "",
                "values": values,
                "details": {
                    "loss_histograms": hist,
                    "roc_loss": {"candidate": [[0, 0], [0.5, 0.6], [1, 1]]},
                    "attacks": {"loss": values},
                },
            },
            "mia_tpr_at_1pct_fpr": {
                "name": "mia_tpr_at_1pct_fpr",
                "family": "privacy",
                "applies": True,
                "value": 0.03,
                "reason": "",
                "values": {"original": 0.4, "candidate": 0.03, "reference": None},
                "details": {
                    "reference_note": "anchor",
                    "score_histograms": {
                        "edges": [-1.0, 0.0, 1.0],
                        "candidate": {"members": [3, 1], "nonmembers": [2, 2]},
                        "original": {"members": [0, 4], "nonmembers": [2, 2]},
                    },
                },
            },
            "relearn_recovery": {
                "name": "relearn_recovery",
                "family": "robustness",
                "applies": True,
                "value": 0.35,
                "reason": "",
                "values": {"candidate": 0.35, **({"reference": 0.02} if reference else {})},
                "details": {
                    "relearn_data": "related: half of the forget probe",
                    "measured_on": "the held-back examples",
                    "values_are": "share of forgetting undone",
                },
            },
            "canary_exposure": {
                "name": "canary_exposure",
                "family": "extraction",
                "applies": False,
                "reason": "not a language model",
                "values": {},
                "details": {},
            },
        },
        "tests": [
            {
                "metric": "mia_auc",
                "comparator": "<=",
                "threshold": 0.6,
                "relative_to_reference": False,
                "status": "pass",
                "measured": 0.55,
                "reason": "ok",
            },
            {
                "metric": "relearn_recovery",
                "comparator": "<=",
                "threshold": 0.1,
                "relative_to_reference": True,
                "status": "fail",
                "measured": 0.33,
                "reason": "too much",
            },
        ],
        "regressions": [],
        "passed": False,
        "summary": "FAIL: relearn_recovery (fail)",
        "settings": {},
        "timing": {"wall_s": 1.0},
        "created_at": "2026-01-01T00:00:00+00:00",
        "signature": {"verifier_key": "k", "signature": "s"},
    }


def _row(page: str, metric: str) -> str:
    m = re.search(rf'<tr><th scope="row"><code>{metric}</code>.*?</tr>', page, re.S)
    assert m is not None, metric
    return m.group(0)


def test_the_report_shows_each_metric_for_three_models_with_its_threshold_and_result() -> None:
    page = render_html(_report())
    glance = page[
        page.index('<table class="glance">') : page.index("</table>", page.index('<table class="glance">'))
    ]
    assert [h for h in re.findall(r'<th scope="col">(.*?)</th>', glance)] == [
        "metric",
        "original",
        "candidate",
        "retrained",
        "threshold",
        "result",
    ]
    row = _row(glance, "mia_auc")
    assert re.findall(r"<td>(.*?)</td>", row)[:4] == ["0.8", "0.55", "0.52", "&lt;= 0.6"] and ">pass<" in row
    relearn = _row(glance, "relearn_recovery")
    assert (
        "the baseline (nothing forgotten)" in relearn
        and "(candidate - retrained)" in relearn
        and ">fail<" in relearn
    )
    assert "the attack&#x27;s anchor" in _row(glance, "mia_tpr_at_1pct_fpr") and "not in the policy" in _row(
        glance, "mia_tpr_at_1pct_fpr"
    )
    assert "canary_exposure" not in glance  # does not apply: listed apart
    # what each recovery attack recovered, beside the retrained model's figure under the same attack
    assert "undid 35 % of the forgetting" in page and "retrained model under the same attack: 2 %" in page
    # the score distributions: forget vs held-out, candidate vs retrained vs original
    for label in ("candidate: forget", "candidate: held-out", "retrained: forget", "original: forget"):
        assert label in page
    assert "Per-example attack scores on forget examples" in page
    no_ref = render_html(_report(reference=False))
    assert "not computed: no retrained reference" in _row(no_ref, "mia_auc")
    assert "retrained: not computed" in no_ref


def _luminance(colour: str) -> float:
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_the_report_page_is_accessible_and_renders_in_milliseconds() -> None:
    r = _report()
    start = time.perf_counter()
    page = render_html(r)
    assert time.perf_counter() - start < 0.2  # was 3.7-6.6 s with matplotlib (issue 19)
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page and "<title>" in page
    assert "<main>" in page and "<h1>" in page and "<script" not in page
    for table in re.findall(r"<table.*?</table>", page, re.S):
        assert "<caption>" in table and "<th scope=" in table
        assert "<th>" not in table  # every header cell says what it heads
    svgs = re.findall(r"<svg xmlns.*?</svg>", page, re.S)
    assert len(svgs) >= 3
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.get("role") == "img"
        title_id, desc_id = (root.get("aria-labelledby") or "").split()
        assert desc_id.startswith("plot-desc")
        ns = "{http://www.w3.org/2000/svg}"
        assert root.find(f"{ns}title").get("id") == title_id  # type: ignore[union-attr]
        assert (root.find(f"{ns}desc").text or "").strip()  # type: ignore[union-attr]
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for colour in STATUS_COLOURS.values():  # status text on white and on the header grey: WCAG AA
        assert _contrast(colour, "#ffffff") >= 4.5 and _contrast(colour, "#f6f8fa") >= 4.5
    for verdict in ("pass", "fail"):  # white verdict text on the verdict's colour
        assert _contrast("#ffffff", STATUS_COLOURS[verdict]) >= 4.5
    for ns_decl in ('xmlns="http://www.w3.org/2000/svg"',):
        page = page.replace(ns_decl, "")
    assert "http://" not in page and "https://" not in page


def test_the_page_is_stored_once_and_served_as_stored(tmp_path: Path) -> None:
    r = _report()
    assert stored_page(tmp_path, r) is None
    assert not (tmp_path / "reports").exists()  # reading writes nothing
    assert report_page(tmp_path, r) == render_html(r)
    assert not (tmp_path / "reports").exists()
    path = store_page(tmp_path, {k: v for k, v in r.items() if k != "signature"})  # stored before signing
    assert path.name == f"{page_key(r)}.html" and path.read_text() == render_html(r)
    path.write_text("<p>stored</p>")  # what is served is the stored file, not a new rendering
    assert report_page(tmp_path, r) == "<p>stored</p>"
    other = {**r, "summary": "PASS"}  # another report: another page
    assert page_key(other) != page_key(r) and report_page(tmp_path, other) != "<p>stored</p>"
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [path.name]
