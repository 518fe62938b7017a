"""The verification report as one self-contained HTML page: a verdict line, the acceptance tests with why each
passed or failed, the regression checks, every metric for original / candidate / reference, and inline SVG
plots (membership-inference ROC curves, forget vs held-out loss distributions, per-node utility, canary
exposure). No scripts, no external files, no plotting library: the SVG is written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from unlearning.verification.catalog import CATALOG, FAMILIES
from unlearning.verification.spec import VerificationReport

COLOURS = {"original": "#7f7f7f", "candidate": "#d62728", "reference": "#1f77b4"}
STATUS_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "unmeasured": "#9a6700", "not_applicable": "#6e7781"}
W, H, PAD = 360, 220, 36


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return escape(str(x))


def _svg(body: str, title: str) -> str:
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
        f'<rect width="{W}" height="{H}" fill="#fff" stroke="#d0d7de"/>{body}</svg>'
        f"<figcaption>{escape(title)}</figcaption></figure>"
    )


def _axes(xlabel: str, ylabel: str, ymax: float) -> str:
    x0, y0, x1, y1 = PAD, H - PAD, W - 10, 10
    return (
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>'
        f'<text x="{(x0 + x1) / 2}" y="{H - 6}" font-size="11" text-anchor="middle">{escape(xlabel)}</text>'
        f'<text x="10" y="{(y0 + y1) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 10 {(y0 + y1) / 2})">{escape(ylabel)}</text>'
        f'<text x="{x0 - 4}" y="{y1 + 8}" font-size="9" text-anchor="end">{ymax:.3g}</text>'
        f'<text x="{x0 - 4}" y="{y0}" font-size="9" text-anchor="end">0</text>'
    )


def _legend(roles: Sequence[str]) -> str:
    out = []
    for i, r in enumerate(roles):
        out.append(
            f'<rect x="{W - 95}" y="{14 + 14 * i}" width="10" height="10" fill="{COLOURS.get(r, "#000")}"/>'
            f'<text x="{W - 80}" y="{23 + 14 * i}" font-size="10">{escape(r)}</text>'
        )
    return "".join(out)


def roc_svg(curves: dict[str, list[list[float]]], aucs: dict[str, float]) -> str:
    sx, sy = (W - 10 - PAD), (H - PAD - 10)
    body = [_axes("false-positive rate", "true-positive rate", 1.0)]
    body.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="10" stroke="#ccc" stroke-dasharray="4"/>')
    for role, pts in curves.items():
        path = " ".join(f"{PAD + f * sx:.1f},{H - PAD - t * sy:.1f}" for f, t in pts)
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{COLOURS.get(role, "#000")}" stroke-width="2"/>'
        )
    labels = [f"{r} (AUC {aucs.get(r, float('nan')):.3f})" for r in curves]
    body.append(_legend(list(curves)))
    return _svg("".join(body), "Membership inference (loss attack) ROC: " + ", ".join(labels))


def bars_svg(groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str) -> str:
    vals = [v for s in series.values() for v in s if v is not None]
    ymax = max([*vals, 1e-9])
    n_series = max(1, len(series))
    gw = (W - 10 - PAD) / max(1, len(groups))
    bw = gw * 0.8 / n_series
    body = [_axes("", ylabel, ymax)]
    for gi, g in enumerate(groups):
        x = PAD + gi * gw
        body.append(
            f'<text x="{x + gw / 2:.1f}" y="{H - PAD + 12}" font-size="9" text-anchor="middle">{escape(g)}</text>'
        )
        for si, (role, vs) in enumerate(series.items()):
            v = vs[gi] if gi < len(vs) else None
            if v is None:
                continue
            h = max(0.0, v) / ymax * (H - PAD - 10)
            body.append(
                f'<rect x="{x + gw * 0.1 + si * bw:.1f}" y="{H - PAD - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS.get(role, "#888")}"><title>{escape(role)} {escape(g)}: {v:.4g}</title></rect>'
            )
    body.append(_legend(list(series)))
    return _svg("".join(body), title)


def hist_svg(edges: list[float], forget: list[int], heldout: list[int], title: str) -> str:
    n = len(forget)
    ftot, htot = max(1, sum(forget)), max(1, sum(heldout))
    fs = [c / ftot for c in forget]
    hs = [c / htot for c in heldout]
    ymax = max([*fs, *hs, 1e-9])
    bw = (W - 10 - PAD) / max(1, n)
    body = [_axes(f"per-example loss ({edges[0]:.2g} to {edges[-1]:.2g})", "share of examples", ymax)]
    for i in range(n):
        for share, colour in ((hs[i], "#1f77b4"), (fs[i], "#d62728")):
            h = share / ymax * (H - PAD - 10)
            body.append(
                f'<rect x="{PAD + i * bw:.1f}" y="{H - PAD - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                f'fill="{colour}" fill-opacity="0.45"/>'
            )
    body.append(
        f'<rect x="{W - 95}" y="14" width="10" height="10" fill="#d62728" fill-opacity="0.45"/>'
        f'<text x="{W - 80}" y="23" font-size="10">forget</text>'
        f'<rect x="{W - 95}" y="28" width="10" height="10" fill="#1f77b4" fill-opacity="0.45"/>'
        f'<text x="{W - 80}" y="37" font-size="10">held-out</text>'
    )
    return _svg("".join(body), title)


def _plots(r: dict[str, Any]) -> list[str]:
    figs: list[str] = []
    metrics = r.get("metrics", {})
    mia = metrics.get("mia_auc", {})
    det = mia.get("details") or {}
    if det.get("roc_loss"):
        figs.append(roc_svg(det["roc_loss"], det.get("attacks", {}).get("loss", {})))
    hist = det.get("loss_histograms") or {}
    for role in ("original", "candidate", "reference"):
        if role in hist:
            figs.append(
                hist_svg(
                    hist["edges"], hist[role]["forget"], hist[role]["heldout"], f"Loss distribution: {role}"
                )
            )
    util = (metrics.get("retained_utility_drop") or {}).get("details") or {}
    per_node = util.get("per_node") or {}
    if per_node:
        nodes = sorted(per_node, key=lambda k: int(float(k)) if k.replace(".", "").isdigit() else 0)
        roles = [x for x in ("original", "candidate", "reference") if any(x in per_node[n] for n in nodes)]
        series = {role: [per_node[n].get(role) for n in nodes] for role in roles}
        figs.append(
            bars_svg([f"node {n}" for n in nodes], series, "Retained-data accuracy per node", "accuracy")
        )
    exp = (metrics.get("canary_exposure") or {}).get("details") or {}
    if exp.get("canaries"):
        items = exp["canaries"] + exp.get("controls", [])
        labels = [f"x{c.get('repetitions', 0)}" if c in exp["canaries"] else "ctrl" for c in items]
        roles = [x for x in ("original", "candidate", "reference") if x in items[0]]
        series = {role: [c[role]["exposure"] for c in items] for role in roles}
        figs.append(bars_svg(labels, series, "Canary exposure (bits; ctrl = never inserted)", "bits"))
    return figs


def _tests_table(tests: list[dict[str, Any]]) -> str:
    rows = []
    for t in tests:
        colour = STATUS_COLOURS.get(t["status"], "#000")
        rel = " (candidate - reference)" if t.get("relative_to_reference") else ""
        rows.append(
            f"<tr><td><code>{escape(t['metric'])}</code>{rel}</td><td>{escape(t['comparator'])} {_fmt(t['threshold'])}</td>"
            f"<td>{_fmt(t.get('measured'))}</td><td style='color:{colour};font-weight:bold'>"
            f"{escape(t['status'].replace('_', ' '))}</td><td>{escape(t.get('reason', ''))}</td></tr>"
        )
    return (
        "<table><tr><th>metric</th><th>test</th><th>measured</th><th>result</th><th>why</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _metrics_table(metrics: dict[str, dict[str, Any]]) -> str:
    rows = []
    for family in FAMILIES:
        for name, m in metrics.items():
            if m.get("family") != family:
                continue
            vals = m.get("values") or {}
            desc = CATALOG[name].description if name in CATALOG else ""
            value = _fmt(m.get("value")) if m.get("applies") else "does not apply"
            rows.append(
                f"<tr><td>{escape(family)}</td><td><code>{escape(name)}</code><br><small>{escape(desc)}</small></td>"
                f"<td>{value}</td><td>{_fmt(vals.get('original'))}</td><td>{_fmt(vals.get('candidate'))}</td>"
                f"<td>{_fmt(vals.get('reference'))}</td><td>{escape(m.get('reason') or '')}</td></tr>"
            )
    return (
        "<table><tr><th>family</th><th>metric</th><th>value</th><th>original</th><th>candidate</th>"
        "<th>reference</th><th>note</th></tr>" + "".join(rows) + "</table>"
    )


CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#1f2328}"
    "table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #d0d7de;padding:4px 8px;"
    "text-align:left;vertical-align:top;font-size:14px}th{background:#f6f8fa}.verdict{font-size:1.6em;"
    "padding:.5em 1em;border-radius:6px;color:#fff}figure{display:inline-block;margin:.5em}"
    "figcaption{font-size:12px;max-width:360px}code{font-size:13px}"
)


def render_html(report: VerificationReport | dict[str, Any]) -> str:
    r = report.to_dict() if isinstance(report, VerificationReport) else report
    passed = bool(r.get("passed"))
    colour = STATUS_COLOURS["pass" if passed else "fail"]
    models = r.get("models") or {}
    model_rows = "".join(
        f"<tr><td>{escape(role)}</td><td><code>{_fmt((m or {}).get('version'))}</code></td>"
        f"<td><code>{_fmt((m or {}).get('content_hash'))}</code></td></tr>"
        for role, m in models.items()
    )
    regs = r.get("regressions") or []
    reg_html = (
        "".join(
            f"<h3>{escape(g['label'])}: {'passed' if g['passed'] else 'FAILED'}</h3>{_tests_table(g['tests'])}"
            for g in regs
        )
        or "<p>No earlier unlearning in this lineage to re-check.</p>"
    )
    target = r.get("target") or {}
    libs = ", ".join(f"{k} {v}" for k, v in sorted((r.get("libraries") or {}).items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Verification of {
        escape(str(r.get("candidate_version")))
    }</title>
<style>{CSS}</style></head><body>
<p class="verdict" style="background:{colour}">{escape(str(r.get("summary", "")))}</p>
<p>Candidate <code>{escape(str(r.get("candidate_version")))}</code> ({escape(str(r.get("task")))}), target
<code>{escape(str(target.get("kind", "none")))} {escape(str(target.get("value", "")))}</code>{
        f", proposal {r['proposal_id']}" if r.get("proposal_id") is not None else ""
    }.</p>
<h2>Acceptance tests (the policy members voted on)</h2>
{_tests_table(r.get("tests") or [])}
<p><small>not applicable: the metric does not fit this task and is not counted; unmeasured: the metric applies
but no value could be measured, which blocks the release.</small></p>
<h2>Regression checks (earlier unlearnings of this lineage)</h2>
{reg_html}
<h2>Plots</h2>
{"".join(_plots(r)) or "<p>No plots for this task.</p>"}
<h2>Every metric</h2>
{_metrics_table(r.get("metrics") or {})}
<h2>Models and reproducibility</h2>
<table><tr><th>role</th><th>version</th><th>content hash</th></tr>{model_rows}</table>
<p><small>policy hash <code>{escape(str(r.get("policy_hash")))}</code> · config hash
<code>{escape(str(r.get("config_hash")))}</code> · seed {escape(str(r.get("seed")))} · precision
{escape(str(r.get("precision")))} · {escape(libs)} · created {escape(str(r.get("created_at")))} · verification
took {_fmt((r.get("timing") or {}).get("wall_s"))} s</small></p>
</body></html>
"""
