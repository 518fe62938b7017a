"""The verification report as one self-contained HTML page: a verdict line, the acceptance tests with why each
passed or failed, the regression checks, every metric for original / candidate / reference, and inline SVG
plots drawn with matplotlib and inlined as SVG (membership-inference ROC curves, forget vs held-out loss
distributions, per-node utility, canary exposure). No scripts, no external files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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


def _figure(draw: Callable[[Any], None], title: str, xlabel: str = "", ylabel: str = "") -> str:
    """One plot drawn with matplotlib (Agg) and inlined as SVG text: no image files, no scripts."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(W / 72, H / 72), dpi=72)
    ax = fig.add_subplot()
    draw(ax)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})  # no timestamp: the same report, the same page
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE: the SVG is inlined in HTML
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)  # matplotlib's RDF credits
    return f'<figure role="img" aria-label="{escape(title)}">{svg}<figcaption>{escape(title)}</figcaption></figure>'


def roc_svg(curves: dict[str, list[list[float]]], aucs: dict[str, float]) -> str:
    def draw(ax: Any) -> None:
        ax.plot([0, 1], [0, 1], color="#cccccc", linestyle="--", linewidth=1)
        for role, pts in curves.items():
            ax.plot(
                [f for f, _ in pts],
                [t for _, t in pts],
                color=COLOURS.get(role, "#000000"),
                linewidth=2,
                label=f"{role} (AUC {aucs.get(role, float('nan')):.3f})",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)

    labels = [f"{r} (AUC {aucs.get(r, float('nan')):.3f})" for r in curves]
    return _figure(
        draw,
        "Membership inference (loss attack) ROC: " + ", ".join(labels),
        "false-positive rate",
        "true-positive rate",
    )


def bars_svg(groups: list[str], series: dict[str, list[float | None]], title: str, ylabel: str) -> str:
    def draw(ax: Any) -> None:
        n = max(1, len(series))
        width = 0.8 / n
        for si, (role, values) in enumerate(series.items()):
            xs = [gi + si * width - 0.4 + width / 2 for gi in range(len(groups))]
            ys = [v if v is not None else 0.0 for v in (list(values) + [None] * len(groups))[: len(groups)]]
            ax.bar(xs, ys, width=width, color=COLOURS.get(role, "#888888"), label=role)
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 6 else 0)

    return _figure(draw, title, "", ylabel)


def hist_svg(edges: list[float], forget: list[int], heldout: list[int], title: str) -> str:
    def draw(ax: Any) -> None:
        for counts, colour, label in ((heldout, "#1f77b4", "held-out"), (forget, "#d62728", "forget")):
            total = max(1, sum(counts))
            ax.stairs([c / total for c in counts], edges, fill=True, alpha=0.45, color=colour, label=label)

    return _figure(draw, title, f"per-example loss ({edges[0]:.2g} to {edges[-1]:.2g})", "share of examples")


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
