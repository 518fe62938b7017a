"""The verification report as one self-contained, accessible HTML page.

At a glance: the verdict; per metric the original, the candidate and the retrained reference side by side with
the policy's threshold and the test's result (and, where a figure was not computed, why not); what each
recovery attack recovered, the candidate's against the retrained model's under the same attack; plots of the
per-example score distributions (forget vs held-out, candidate vs retrained vs original) and the rest. Then the
acceptance tests with why each passed or failed, the regression checks and the models.

The plots are SVG written here (no plotting library, no scripts, no external files, so a page renders in
milliseconds); each has a title and a description that state its numbers for a screen reader. The page is
rendered once when the report is stored (:func:`unlearning.api.store_report_html`) and served as stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from unlearning.verification.catalog import CATALOG, FAMILIES
from unlearning.verification.spec import VerificationReport

ROLES = ("original", "candidate", "reference")
ROLE_LABELS = {"original": "original", "candidate": "candidate", "reference": "retrained"}
COLOURS = {"original": "#6e7781", "candidate": "#cf222e", "reference": "#0969da"}
# text colours with a contrast of at least 4.5:1 on white and on the table header grey (WCAG AA)
STATUS_COLOURS = {"pass": "#116329", "fail": "#a40e26", "unmeasured": "#7d4e00", "not_applicable": "#57606a"}
W, H = 380, 230
ML, MR, MT, MB = 48, 12, 12, 40  # plot margins: left, right, top, bottom

RECOVERY = (  # the recovery attacks, and what their figures mean
    ("relearn_recovery", "Relearning on known forget examples, measured on the held-back rest"),
    ("quantization_recovery", "int8 dynamic quantisation"),
    ("quantization4_recovery", "4-bit weights (round-to-nearest per output channel)"),
    ("format_shift_recovery", "Format-shifted probes (worst shift)"),
    ("sampled_extraction_rate", "Best-of-N sampling of secrets"),
    ("format_shift_extraction_rate", "Greedy extraction after format-shifted prompts"),
)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.4g}"
    return escape(str(x))


def _pct(x: Any) -> str:
    return "-" if not isinstance(x, int | float) else f"{100 * float(x):.0f} %"


class _Ids:
    """Unique element ids for one page (SVG titles and descriptions)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, stem: str) -> str:
        self.n += 1
        return f"{stem}-{self.n}"


# ------------------------------------------------------------------------------------------------ plots


def _nice(lo: float, hi: float) -> tuple[float, float]:
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def _svg(ids: _Ids, title: str, desc: str, body: str, legend: Sequence[tuple[str, str, str | None]]) -> str:
    """One accessible figure: role=img with a title and a description; a legend as text below (a line
    sample in the series' style, or a filled box for bars: style None)."""
    t, d = ids("plot-title"), ids("plot-desc")
    items = "".join(
        '<li><svg width="20" height="10" aria-hidden="true" focusable="false">'
        + (
            f'<line x1="0" y1="5" x2="20" y2="5" stroke="{colour}" stroke-width="2" {style}/>'
            if style is not None
            else f'<rect width="20" height="10" fill="{colour}"/>'
        )
        + f"</svg> {escape(label)}</li>"
        for label, colour, style in legend
    )
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'role="img" aria-labelledby="{t} {d}"><title id="{t}">{escape(title)}</title>'
        f'<desc id="{d}">{escape(desc)}</desc>{body}</svg>'
        f'<figcaption>{escape(title)}<ul class="legend">{items}</ul></figcaption></figure>'
    )


def _axes(x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str) -> str:
    pw, ph = W - ML - MR, H - MT - MB
    out = [
        f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#57606a" stroke-width="1"/>'
    ]
    for i in range(5):
        fx, fy = i / 4, i / 4
        x = ML + fx * pw
        y = MT + ph - fy * ph
        out.append(
            f'<text x="{x:.1f}" y="{MT + ph + 14}" font-size="10" text-anchor="middle" fill="#1f2328">'
            f"{x0 + fx * (x1 - x0):.3g}</text>"
        )
        out.append(
            f'<text x="{ML - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end" fill="#1f2328">'
            f"{y0 + fy * (y1 - y0):.3g}</text>"
        )
    out.append(
        f'<text x="{ML + pw / 2}" y="{H - 6}" font-size="11" text-anchor="middle" fill="#1f2328">'
        f"{escape(xlabel)}</text>"
    )
    out.append(
        f'<text x="12" y="{MT + ph / 2}" font-size="11" text-anchor="middle" fill="#1f2328" '
        f'transform="rotate(-90 12 {MT + ph / 2})">{escape(ylabel)}</text>'
    )
    return "".join(out)


def _xy(x: float, y: float, box: tuple[float, float, float, float]) -> tuple[float, float]:
    x0, x1, y0, y1 = box
    pw, ph = W - ML - MR, H - MT - MB
    return ML + (x - x0) / (x1 - x0) * pw, MT + ph - (y - y0) / (y1 - y0) * ph


def _polyline(
    points: Iterable[tuple[float, float]], box: tuple[float, float, float, float], style: str
) -> str:
    pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in (_xy(x, y, box) for x, y in points))
    return f'<polyline points="{pts}" fill="none" {style}/>'


def _steps(edges: Sequence[float], shares: Sequence[float]) -> list[tuple[float, float]]:
    pts = [(edges[0], 0.0)]
    for i, s in enumerate(shares):
        pts += [(edges[i], s), (edges[i + 1], s)]
    return [*pts, (edges[-1], 0.0)]


def _shares(counts: Sequence[int]) -> list[float]:
    total = max(1, sum(counts))
    return [c / total for c in counts]


DASHES = {
    "forget": "",
    "heldout": 'stroke-dasharray="5 3"',
    "members": "",
    "nonmembers": 'stroke-dasharray="5 3"',
}


def distribution_svg(
    ids: _Ids,
    edges: Sequence[float],
    series: Sequence[tuple[str, str, str, Sequence[int]]],
    title: str,
    xlabel: str,
) -> str:
    """Histograms as step lines on shared edges: series of (label, role, part, counts)."""
    shares = [(label, role, part, _shares(c)) for label, role, part, c in series]
    top = max((max(s) for *_, s in shares if s), default=1.0) or 1.0
    box = (float(edges[0]), float(edges[-1]), 0.0, top * 1.05)
    box = (*_nice(box[0], box[1]), box[2], box[3])
    body = _axes(*box, xlabel, "share of examples")
    legend: list[tuple[str, str, str | None]] = []
    for label, role, part, s in shares:
        colour = COLOURS.get(role, "#1f2328")
        dash = DASHES.get(part, "")
        body += _polyline(_steps(edges, s), box, f'stroke="{colour}" stroke-width="2" {dash}')
        legend.append((label, colour, dash))
    desc = "; ".join(
        f"{label}: {sum(c)} examples, median bin {_median_bin(edges, c)}" for label, _, _, c in series
    )
    return _svg(ids, title, desc + ".", body, legend)


def _median_bin(edges: Sequence[float], counts: Sequence[int]) -> str:
    total, run = sum(counts), 0
    for i, c in enumerate(counts):
        run += c
        if total and run * 2 >= total:
            return f"{edges[i]:.3g} to {edges[i + 1]:.3g}"
    return "none"


def roc_svg(ids: _Ids, curves: dict[str, list[list[float]]], aucs: dict[str, float]) -> str:
    box = (0.0, 1.0, 0.0, 1.0)
    body = _axes(*box, "false-positive rate", "true-positive rate")
    body += _polyline([(0, 0), (1, 1)], box, 'stroke="#8c959f" stroke-width="1" stroke-dasharray="4 3"')
    legend: list[tuple[str, str, str | None]] = []
    for role in ROLES:
        if role in curves:
            body += _polyline(
                [(f, t) for f, t in curves[role]], box, f'stroke="{COLOURS[role]}" stroke-width="2"'
            )
            legend.append(
                (f"{ROLE_LABELS[role]} (AUC {aucs.get(role, float('nan')):.3f})", COLOURS[role], "")
            )
    desc = ", ".join(f"{ROLE_LABELS.get(r, r)} AUC {aucs.get(r, float('nan')):.3f}" for r in curves)
    return _svg(ids, "Membership inference ROC (loss attack, forget vs held-out)", desc + ".", body, legend)


def bars_svg(
    ids: _Ids, groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str
) -> str:
    vals = [v for vs in series.values() for v in vs if v is not None]
    top = max([*vals, 0.0]) or 1.0
    low = min([*vals, 0.0])
    box = (0.0, float(max(1, len(groups))), low, top * 1.1)
    pw, ph = W - ML - MR, H - MT - MB
    body = f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#57606a"/>'
    for i in range(5):
        y = low + i / 4 * (box[3] - low)
        _, py = _xy(0, y, box)
        body += f'<text x="{ML - 4}" y="{py + 3:.1f}" font-size="10" text-anchor="end" fill="#1f2328">{y:.3g}</text>'
    body += (
        f'<text x="12" y="{MT + ph / 2}" font-size="11" text-anchor="middle" fill="#1f2328" '
        f'transform="rotate(-90 12 {MT + ph / 2})">{escape(ylabel)}</text>'
    )
    n = max(1, len(series))
    width = 0.8 / n
    for gi, g in enumerate(groups):
        gx, _ = _xy(gi + 0.5, 0, box)
        body += (
            f'<text x="{gx:.1f}" y="{MT + ph + 14}" font-size="10" text-anchor="middle" fill="#1f2328">'
            f"{escape(g)}</text>"
        )
        for si, (role, values) in enumerate(series.items()):
            v = values[gi] if gi < len(values) else None
            if v is None:
                continue
            x_a, y_a = _xy(gi + 0.1 + si * width, max(v, 0.0), box)
            x_b, y_b = _xy(gi + 0.1 + (si + 1) * width, min(v, 0.0), box)
            body += (
                f'<rect x="{x_a:.1f}" y="{y_a:.1f}" width="{x_b - x_a:.1f}" height="{max(0.5, y_b - y_a):.1f}" '
                f'fill="{COLOURS.get(role, "#57606a")}"/>'
            )
    desc = "; ".join(
        f"{ROLE_LABELS.get(r, r)}: " + ", ".join(f"{g} {_fmt(v)}" for g, v in zip(groups, vs, strict=False))
        for r, vs in series.items()
    )
    legend: list[tuple[str, str, str | None]] = [
        (ROLE_LABELS.get(r, r), COLOURS.get(r, "#57606a"), None) for r in series
    ]
    return _svg(ids, title, desc + ".", body, legend)


def _plots(r: dict[str, Any], ids: _Ids) -> list[str]:
    figs: list[str] = []
    metrics = r.get("metrics") or {}
    det = (metrics.get("mia_auc") or {}).get("details") or {}
    hist = det.get("loss_histograms") or {}
    if hist.get("edges"):
        series = []
        for role, part, label in (
            ("candidate", "forget", "candidate: forget"),
            ("candidate", "heldout", "candidate: held-out"),
            ("reference", "forget", "retrained: forget"),
            ("original", "forget", "original: forget"),
        ):
            if role in hist:
                series.append((label, role, part, hist[role][part]))
        figs.append(
            distribution_svg(
                ids,
                hist["edges"],
                series,
                "Per-example loss: forget vs held-out, candidate vs retrained vs original",
                "per-example loss (lower: better known)",
            )
        )
    for name, what in (
        ("mia_tpr_at_1pct_fpr", "forget examples"),
        ("retained_mia_tpr_at_1pct_fpr", "retained examples"),
    ):
        h = ((metrics.get(name) or {}).get("details") or {}).get("score_histograms") or {}
        if h.get("edges"):
            series = []
            for role in ("candidate", "original"):
                if role in h:
                    series.append((f"{role}: {what}", role, "members", h[role]["members"]))
                    series.append((f"{role}: held-out", role, "nonmembers", h[role]["nonmembers"]))
            figs.append(
                distribution_svg(
                    ids,
                    h["edges"],
                    series,
                    f"Per-example attack scores on {what} vs held-out (RMIA, anchored by the retrained model)",
                    "log p_model(x) - log p_retrained(x)",
                )
            )
    if det.get("roc_loss"):
        figs.append(roc_svg(ids, det["roc_loss"], det.get("attacks", {}).get("loss", {})))
    util = (metrics.get("retained_utility_drop") or {}).get("details") or {}
    per_node = util.get("per_node") or {}
    if per_node:
        nodes = sorted(per_node, key=lambda k: int(float(k)) if k.replace(".", "").isdigit() else 0)
        roles = [x for x in ROLES if any(x in per_node[n] for n in nodes)]
        series_b = {role: [per_node[n].get(role) for n in nodes] for role in roles}
        figs.append(
            bars_svg(ids, [f"node {n}" for n in nodes], series_b, "Retained-data quality per node", "quality")
        )
    exp = (metrics.get("canary_exposure") or {}).get("details") or {}
    if exp.get("canaries"):
        items = exp["canaries"] + exp.get("controls", [])
        labels = [f"x{c.get('repetitions', 0)}" if c in exp["canaries"] else "ctrl" for c in items]
        roles = [x for x in ROLES if x in items[0]]
        series_b = {role: [c[role]["exposure"] for c in items] for role in roles}
        figs.append(bars_svg(ids, labels, series_b, "Canary exposure in bits (ctrl: never inserted)", "bits"))
    return figs


# ------------------------------------------------------------------------------------------------ tables


def _status(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#1f2328")
    return f'<strong style="color:{colour}">{escape(status.replace("_", " "))}</strong>'


def _missing(name: str, m: dict[str, Any], role: str, has_reference: bool) -> str:
    """Why a model's figure is absent from a metric that applies."""
    details = m.get("details") or {}
    if role == "reference":
        if not has_reference:
            return "not computed: no retrained reference"
        if "reference_note" in details:
            return "the attack's anchor (chance by construction)"
        return "not computed for this metric"
    if role == "original" and "values_are" in details and "undone" in str(details.get("values_are")):
        return "the baseline (nothing forgotten)"
    return "not computed"


def _cell(m: dict[str, Any], name: str, role: str, has_reference: bool) -> str:
    vals = m.get("values") or {}
    v = vals.get(role)
    if v is not None:
        return _fmt(v)
    return f"<small>{escape(_missing(name, m, role, has_reference))}</small>"


def _glance(r: dict[str, Any]) -> str:
    """Per metric: original, candidate, retrained side by side with the policy's test and its result."""
    metrics: dict[str, dict[str, Any]] = r.get("metrics") or {}
    tests = {t["metric"]: t for t in r.get("tests") or []}
    has_reference = bool((r.get("models") or {}).get("reference"))
    rows = []
    names = [n for f in FAMILIES for n, m in metrics.items() if m.get("family") == f and m.get("applies")]
    names = [n for n in names if n in tests] + [n for n in names if n not in tests]
    for name in names:
        m = metrics[name]
        t = tests.get(name)
        if t is not None:
            rel = " (candidate - retrained)" if t.get("relative_to_reference") else ""
            test = f"{escape(t['comparator'])} {_fmt(t['threshold'])}{rel}"
            status = _status(t["status"])
        else:
            test, status = "<small>not in the policy</small>", "<small>reported only</small>"
        desc = CATALOG[name].description if name in CATALOG else ""
        rows.append(
            f'<tr><th scope="row"><code>{escape(name)}</code><br><small>{escape(desc)}</small></th>'
            + "".join(f"<td>{_cell(m, name, role, has_reference)}</td>" for role in ROLES)
            + f"<td>{test}</td><td>{status}</td></tr>"
        )
    if not rows:
        return "<p>No metric applies to this report.</p>"
    return (
        '<table class="glance"><caption>Every measured metric: the original model, the candidate and the '
        "model retrained without the target, measured on the same probes</caption><thead><tr>"
        '<th scope="col">metric</th><th scope="col">original</th><th scope="col">candidate</th>'
        '<th scope="col">retrained</th><th scope="col">threshold</th><th scope="col">result</th></tr></thead>'
        "<tbody>" + "".join(rows) + "</tbody></table>"
    )


def _recovered(name: str, m: dict[str, Any]) -> str:
    """One sentence: what the attack recovered from the candidate, and from the retrained model."""
    vals = m.get("values") or {}
    d = m.get("details") or {}
    cand, ref = vals.get("candidate"), vals.get("reference")
    ref_txt = (
        f"retrained model under the same attack: {_pct(ref)}"
        if ref is not None
        else "retrained: not computed"
    )
    if name in ("sampled_extraction_rate", "format_shift_extraction_rate"):
        extra = ""
        if name == "sampled_extraction_rate":
            extra = f" with {d.get('samples')} samples at temperature 1"
        if name == "format_shift_extraction_rate" and d.get("greedy"):
            extra = f" (plain greedy: {_pct((d.get('greedy') or {}).get('candidate'))})"
        return (
            f"extracted {_pct(cand)} of {d.get('attempts')} secrets / forbidden completions{extra}; "
            f"original {_pct(vals.get('original'))}; {ref_txt}"
        )
    where = ""
    if name == "relearn_recovery":
        where = f" ({escape(str(d.get('relearn_data', '')))}; {escape(str(d.get('measured_on', '')))})"
    if name == "format_shift_recovery" and d.get("worst_shift"):
        where = f" (worst shift: {escape(str(d['worst_shift']))})"
    if cand is None:
        return f"no share measured: {escape(str(m.get('reason') or ''))}; {ref_txt}"
    return f"undid {_pct(cand)} of the forgetting{where}; {ref_txt}"


def _recovery(r: dict[str, Any]) -> str:
    metrics = r.get("metrics") or {}
    rows = []
    for name, label in RECOVERY:
        m = metrics.get(name)
        if not m:
            continue
        text = _recovered(name, m) if m.get("applies") else f"does not apply: {escape(m.get('reason') or '')}"
        rows.append(
            f'<tr><th scope="row">{escape(label)}<br><code>{escape(name)}</code></th><td>{text}</td></tr>'
        )
    if not rows:
        return "<p>No recovery attack was run for this report.</p>"
    return (
        "<table><caption>Recovery attacks: how much of the forgetting an attacker gets back</caption>"
        '<thead><tr><th scope="col">attack</th><th scope="col">what it recovered</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


def _tests_table(tests: list[dict[str, Any]], caption: str) -> str:
    if not tests:
        return "<p>No acceptance tests.</p>"
    rows = []
    for t in tests:
        rel = " (candidate - retrained)" if t.get("relative_to_reference") else ""
        rows.append(
            f'<tr><th scope="row"><code>{escape(t["metric"])}</code>{rel}</th>'
            f"<td>{escape(t['comparator'])} {_fmt(t['threshold'])}</td><td>{_fmt(t.get('measured'))}</td>"
            f"<td>{_status(t['status'])}</td><td>{escape(t.get('reason', ''))}</td></tr>"
        )
    return (
        f"<table><caption>{escape(caption)}</caption><thead><tr><th scope='col'>metric</th>"
        "<th scope='col'>test</th><th scope='col'>measured</th><th scope='col'>result</th>"
        "<th scope='col'>why</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    rows = []
    for family in FAMILIES:
        for name, m in metrics.items():
            if m.get("family") != family or m.get("applies"):
                continue
            rows.append(
                f'<tr><th scope="row"><code>{escape(name)}</code></th><td>{escape(family)}</td>'
                f"<td>{escape(m.get('reason') or '')}</td></tr>"
            )
    if not rows:
        return ""
    return (
        "<h2>Metrics that do not apply</h2><table><caption>Metrics of the catalogue that do not fit this task "
        "or target (not counted)</caption><thead><tr><th scope='col'>metric</th><th scope='col'>family</th>"
        "<th scope='col'>why not</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _computed_at(details: dict[str, Any]) -> str:
    where = "; ".join(details["computed_at"])
    protected = details.get("protected_strings") or {}
    if protected.get("checked"):  # the owners' protected strings, checked on their nodes (counts only)
        nodes = ", ".join(f"{n}: {k}" for n, k in protected["where"].items())
        where += f"; protected strings checked: {protected['checked']} ({nodes})"
    return where


def _where(metrics: dict[str, dict[str, Any]]) -> str:
    rows = [
        f'<tr><th scope="row"><code>{escape(n)}</code></th><td>{escape(_computed_at(m["details"]))}</td></tr>'
        for n, m in metrics.items()
        if m.get("applies") and (m.get("details") or {}).get("computed_at")
    ]
    if not rows:
        return ""
    return (
        "<details><summary>Where each figure was computed</summary><table><caption>Nodes compute figures on "
        "the data they hold; only scores leave them</caption><thead><tr><th scope='col'>metric</th>"
        "<th scope='col'>computed at</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></details>"
    )


CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1100px;color:#1f2328;background:#fff}"
    "table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #d0d7de;padding:4px 8px;"
    "text-align:left;vertical-align:top;font-size:14px}thead th{background:#f6f8fa}tbody th{font-weight:normal}"
    "caption{text-align:left;font-weight:bold;padding:.3em 0}.verdict{font-size:1.5em;padding:.5em 1em;"
    "border-radius:6px;color:#fff;margin:0}figure{display:inline-block;margin:.5em;vertical-align:top}"
    "figcaption{font-size:13px;max-width:380px}ul.legend{list-style:none;padding:0;margin:.3em 0}"
    "ul.legend li{display:inline-block;margin-right:1em}code{font-size:13px}small{color:#57606a}"
)


def render_html(report: VerificationReport | dict[str, Any]) -> str:
    r = report.to_dict() if isinstance(report, VerificationReport) else report
    ids = _Ids()
    passed = bool(r.get("passed"))
    colour = STATUS_COLOURS["pass" if passed else "fail"]
    models = r.get("models") or {}
    model_rows = "".join(
        f'<tr><th scope="row">{escape(ROLE_LABELS.get(role, role))}</th>'
        f"<td><code>{_fmt((m or {}).get('version'))}</code></td>"
        f"<td><code>{_fmt((m or {}).get('content_hash')) if m else 'not computed'}</code></td></tr>"
        for role, m in models.items()
    )
    regs = r.get("regressions") or []
    reg_html = (
        "".join(
            f"<h3>{escape(g['label'])}: {'passed' if g['passed'] else 'FAILED'}</h3>"
            + _tests_table(g["tests"], f"The acceptance tests of {g['label']}, re-checked on this candidate")
            for g in regs
        )
        or "<p>No earlier unlearning in this lineage to re-check.</p>"
    )
    target = r.get("target") or {}
    libs = ", ".join(f"{k} {v}" for k, v in sorted((r.get("libraries") or {}).items()))
    metrics = r.get("metrics") or {}
    no_ref = (
        ""
        if models.get("reference")
        else "<p><strong>No retrained reference was computed:</strong> figures that need it say so; proxies are "
        "named in each metric's details.</p>"
    )
    plots = "".join(_plots(r, ids)) or "<p>No plots for this task.</p>"
    version = escape(str(r.get("candidate_version")))
    proposal = f", proposal {r['proposal_id']}" if r.get("proposal_id") is not None else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Verification report: {version}</title>
<style>{CSS}</style></head><body><main>
<h1>Verification of <code>{version}</code></h1>
<p class="verdict" style="background:{colour}" role="status">{escape(str(r.get("summary", "")))}</p>
<p>Candidate <code>{version}</code> ({escape(str(r.get("task")))}), target
<code>{escape(str(target.get("kind", "none")))} {escape(str(target.get("value", "")))}</code>{proposal}.</p>
{no_ref}
<h2>At a glance</h2>
{_glance(r)}
<h2>Recovery attacks</h2>
{_recovery(r)}
<h2>Score distributions</h2>
{plots}
<h2>Acceptance tests (the policy members voted on)</h2>
{_tests_table(r.get("tests") or [], "Each acceptance test, the measured value and why it passed or failed")}
<p><small>not applicable: the members voted the test, but it cannot be measured on this model and data (the
reason says why); unmeasured: the metric applies but no value could be measured. Both block the release: a
test nobody measured never counts as passed.</small></p>
<h2>Regression checks (earlier unlearnings of this lineage)</h2>
{reg_html}
{_metrics_table(metrics)}
{_where(metrics)}
<h2>Models and reproducibility</h2>
<table><caption>The models measured, by content hash</caption><thead><tr><th scope="col">role</th>
<th scope="col">version</th><th scope="col">content hash</th></tr></thead><tbody>{model_rows}</tbody></table>
<p><small>policy hash <code>{escape(str(r.get("policy_hash")))}</code> · config hash
<code>{escape(str(r.get("config_hash")))}</code> · seed {escape(str(r.get("seed")))} · precision
{escape(str(r.get("precision")))} · {escape(libs)} · created {escape(str(r.get("created_at")))} · verification
took {_fmt((r.get("timing") or {}).get("wall_s"))} s</small></p>
</main></body></html>
"""
