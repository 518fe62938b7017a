"""Privacy: membership inference, forget-set examples (members) against held-out examples of the same
distribution (non-members), with scikit-learn's ROC AUC. 0.5 is no signal; the target is the retrained
reference's AUC (a model that never saw the data), which may itself be below 0.5.

Attacks (higher score = member): ``loss`` (-NLL), ``min_k`` (Min-K%, the mean of the lowest k share of token
log-probabilities; LMs only: a classifier has one token and Min-K% is the loss attack) and ``min_k_pp``
(Min-K%++: token log-probabilities standardised by the model's own next-token distribution).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from unlearning.verification.probes import Scores
from unlearning.verification.registry import Verification, metric, not_applicable, result, unmeasured

CHANCE = 0.5


def auc(member_scores: Tensor, nonmember_scores: Tensor) -> float:
    """ROC AUC of scores separating members (label 1) from non-members (label 0)."""
    from sklearn.metrics import roc_auc_score

    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    values = torch.cat([member_scores, nonmember_scores]).double().numpy()
    return float(roc_auc_score(labels, values))


def auc_variance(member_scores: Tensor, nonmember_scores: Tensor) -> float:
    """The variance of the empirical ROC AUC from its structural components (DeLong, DeLong and
    Clarke-Pearson 1988), by midranks (Sun and Xu 2014): V10_i, the share of non-members a member beats
    (ties count half), and V01_j, the share of members that beat a non-member; Var(AUC) = s2(V10) / n +
    s2(V01) / m. Written here because neither scikit-learn nor scipy exposes it (a dozen lines)."""
    from scipy.stats import rankdata

    x, y = member_scores.double().numpy(), nonmember_scores.double().numpy()
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return 0.0
    both = rankdata(list(x) + list(y))
    v10 = (both[:n] - rankdata(x)) / m
    v01 = 1.0 - (both[n:] - rankdata(y)) / n
    return float(v10.var(ddof=1) / n + v01.var(ddof=1) / m)


def roc_points(member_scores: Tensor, nonmember_scores: Tensor, limit: int = 40) -> list[list[float]]:
    """A downsampled ROC curve [[fpr, tpr], ...] for the report's plot."""
    from sklearn.metrics import roc_curve

    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    fpr, tpr, _ = roc_curve(labels, torch.cat([member_scores, nonmember_scores]).double().numpy())
    step = max(1, len(fpr) // limit)
    pts = [[float(f), float(t)] for f, t in zip(fpr[::step], tpr[::step], strict=True)]
    if pts[-1] != [1.0, 1.0]:
        pts.append([1.0, 1.0])
    return pts


def attacks(v: Verification) -> dict[str, dict[str, float]] | str:
    """{attack: {role: AUC}} (cached), or the reason membership inference does not apply."""
    if "mia" in v.cache:
        cached: dict[str, dict[str, float]] | str = v.cache["mia"]
        return cached
    if v.probes.heldout is None:
        v.cache["mia"] = v.probes.heldout_reason or "no held-out examples"
        return str(v.cache["mia"])
    out: dict[str, dict[str, float]] = {}
    variances: dict[str, dict[str, float]] = {}
    curves: dict[str, list[list[float]]] = {}
    for role in v.roles:
        f, h = v.scores(role, "forget"), v.scores(role, "heldout")
        pairs: dict[str, tuple[Tensor, Tensor]] = {
            "loss": (-f.loss, -h.loss),
            "min_k_pp": (f.min_k_pp, h.min_k_pp),
        }
        if f.min_k is not None and h.min_k is not None:
            pairs["min_k"] = (f.min_k, h.min_k)
        for attack, (m, n) in pairs.items():
            out.setdefault(attack, {})[role] = auc(m, n)
            variances.setdefault(attack, {})[role] = auc_variance(m, n)
        curves[role] = roc_points(-f.loss, -h.loss)
    v.cache["mia"] = out
    v.cache["mia_var"] = variances
    v.cache["loss_hist"] = loss_histograms(v)
    v.cache["mia_roc"] = curves
    return out


def loss_histograms(v: Verification, bins: int = 20) -> dict[str, Any]:
    """Forget vs held-out per-example loss histograms per model, on shared bin edges (for the report)."""
    losses = {r: (v.scores(r, "forget").loss, v.scores(r, "heldout").loss) for r in v.roles}
    allv = torch.cat([torch.cat(p) for p in losses.values()]).clamp(max=50.0)
    lo, hi = float(allv.min()), float(allv.max())
    hi = hi if hi > lo else lo + 1.0
    edges = torch.linspace(lo, hi, bins + 1)
    out: dict[str, Any] = {"edges": [float(e) for e in edges]}
    for role, (f, h) in losses.items():
        out[role] = {
            "forget": [int(c) for c in torch.histc(f.clamp(max=50.0), bins, lo, hi)],
            "heldout": [int(c) for c in torch.histc(h.clamp(max=50.0), bins, lo, hi)],
        }
    return out


def _primary(v: Verification) -> str:
    """The attack PrivLeak uses: Min-K% for language models (as MUSE), the loss attack for classifiers."""
    return "loss" if v.task.is_classifier else "min_k"


@metric("mia_auc")
def mia_auc(v: Verification) -> Any:
    name = "mia_auc"
    a = attacks(v)
    if isinstance(a, str):
        return not_applicable(name, a)
    values: dict[str, float | None] = dict(a["loss"])
    return result(
        name,
        value=a["loss"]["candidate"],
        values=values,
        details={
            "attacks": a,
            "roc_loss": v.cache.get("mia_roc", {}),
            "loss_histograms": v.cache.get("loss_hist", {}),
            "members": len(v.scores("candidate", "forget").loss),
            "nonmembers": len(v.scores("candidate", "heldout").loss),
        },
    )


@metric("mia_auc_gap")
def mia_auc_gap(v: Verification) -> Any:
    """The largest |AUC_candidate - AUC_reference| over the attacks (the strongest attack decides)."""
    name = "mia_auc_gap"
    a = attacks(v)
    if isinstance(a, str):
        return not_applicable(name, a)
    gaps = {
        attack: abs(by_role["candidate"] - by_role.get("reference", CHANCE)) for attack, by_role in a.items()
    }
    worst = max(gaps, key=lambda k: gaps[k])
    values: dict[str, float | None] = {r: a[worst].get(r) for r in ("original", "candidate", "reference")}
    if values["reference"] is None:
        values["reference"] = CHANCE
    source = "retrained reference" if v.has_reference else "proxy: chance (AUC 0.5)"
    return result(
        name,
        value=gaps[worst],
        values=values,
        details={"gaps": gaps, "attack": worst, "reference_source": source},
    )


def gap_pvalue(a: float, var_a: float, target: float) -> tuple[float, float]:
    """(z, two-sided p) of an empirical AUC ``a`` with DeLong variance ``var_a`` against the ``target`` AUC."""
    from scipy.stats import norm

    se = math.sqrt(max(var_a, 0.0))
    if se == 0.0:
        return (0.0, 1.0) if a == target else (math.inf, 0.0)
    z = (a - target) / se
    return z, float(2.0 * norm.sf(abs(z)))


@metric("mia_auc_gap_pvalue")
def mia_auc_gap_pvalue(v: Verification) -> Any:
    """Whether the candidate's membership AUC is further from the reference's than its own sampling spread
    explains: per attack, z = (AUC_candidate - AUC_reference) / SE_candidate, with the DeLong standard error
    from the forget and held-out set sizes and scores, a two-sided normal p-value, and Bonferroni over the
    attacks (the strongest decides). A fixed band on |gap| cannot be calibrated: 20 forget lines put two
    retrained models up to 0.09 apart, 128 digits 0.03 (bench/RESULTS.md "Default policies"). The
    reference's AUC is the target, as in ``mia_auc_gap``; its own spread is not added, because both models
    are scored on the same examples (the examples' sampling is shared) and what differs between two models
    that never saw the target, their training randomness, measured smaller than one SE (bench/auc_null.py:
    retrained gaps at most 1.2 SE on the LM, 0.7 on digits)."""
    name = "mia_auc_gap_pvalue"
    a = attacks(v)
    if isinstance(a, str):
        return not_applicable(name, a)
    var: dict[str, dict[str, float]] = v.cache["mia_var"]
    k = len(a)
    per_attack: dict[str, dict[str, Any]] = {}
    for attack, by_role in a.items():
        ref = by_role.get("reference", CHANCE)
        row: dict[str, Any] = {"auc": dict(by_role), "se": {}, "z": {}, "p": {}}
        for role in ("original", "candidate"):
            if role not in by_role:
                continue
            z, p = gap_pvalue(by_role[role], var[attack][role], ref)
            row["se"][role] = math.sqrt(var[attack][role])
            row["z"][role], row["p"][role] = z, p
        per_attack[attack] = row
    from scipy.stats import norm

    from unlearning.verification.extraction import corrected_pvalue

    worst = min(per_attack, key=lambda x: per_attack[x]["p"]["candidate"])
    # the smallest gap this test can see at this sample size: |z| beyond the corrected two-sided 5 % point
    detectable = float(norm.isf(0.05 / (2 * k))) * per_attack[worst]["se"]["candidate"]
    values: dict[str, float | None] = {
        role: corrected_pvalue([r["p"][role] for r in per_attack.values()])  # Bonferroni over the attacks
        for role in ("original", "candidate")
        if role in v.roles
    }
    values["reference"] = None
    source = "retrained reference" if v.has_reference else "proxy: chance (AUC 0.5)"
    return result(
        name,
        value=values["candidate"],
        values=values,
        details={
            "attack": worst,
            "attacks": per_attack,
            "corrected_over": k,
            "smallest_detectable_gap": detectable,
            "members": len(v.scores("candidate", "forget").loss),
            "nonmembers": len(v.scores("candidate", "heldout").loss),
            "reference_source": source,
            "values_are": "Bonferroni-corrected p-value of the AUC gap to the reference (null: never seen)",
        },
    )


@metric("privleak")
def privleak(v: Verification) -> Any:
    """MUSE's PrivLeak as a fraction: (AUC_candidate - AUC_reference) / AUC_reference (0 is ideal; positive
    leaks membership, negative is over-unlearning, which is detectable too)."""
    name = "privleak"
    a = attacks(v)
    if isinstance(a, str):
        return not_applicable(name, a)
    attack = _primary(v)
    by_role = a[attack]
    ref = by_role.get("reference", CHANCE)
    if ref <= 0:
        return unmeasured(name, "the reference AUC is 0")
    values: dict[str, float | None] = {r: by_role.get(r) for r in ("original", "candidate", "reference")}
    values["reference"] = ref
    source = "retrained reference" if v.has_reference else "proxy: chance (AUC 0.5)"
    return result(
        name,
        value=(by_role["candidate"] - ref) / ref,
        values=values,
        details={
            "attack": attack,
            "original_privleak": (by_role["original"] - ref) / ref,
            "reference_source": source,
        },
    )


# ---- per-example membership inference: RMIA (Zarifzadeh et al. 2024), offline, one reference model --------
#
# The likelihood ratio of an example under the audited model against a reference model that never saw it:
# LR(x) = p_model(x) / p_ref(x), with p the probability of the whole example (an LM: the product over its
# counted tokens, so log LR = tokens x (loss_ref - loss_model); a classifier: the true label's probability).
# The reference is the retrained reference: it never saw the forget examples nor the held-out ones, so a
# model that never saw them either gives forget and held-out examples exchangeable ratios. RMIA's pairwise
# test against population examples z (Pr_z[LR(x) / LR(z) >= gamma]) is a monotone function of LR(x) for a
# fixed population, so the ROC, and every TPR at a fixed FPR, is that of LR(x) itself; RMIA's offline
# marginal ((1 + a) / 2) p_ref + (1 - a) / 2 is taken with a = 1 (an LM's p_ref(x) is far below 1 - a).
# Unlike the population attacks above, the reference calibrates each example's own difficulty, which is
# what lets the attack work at low false-positive rates (Carlini et al. 2022; Hayes et al. 2024, U-LiRA).

FPRS = {"mia_tpr_at_1pct_fpr": 0.01, "mia_tpr_at_01pct_fpr": 0.001}


def tpr_at_fpr(member: Tensor, nonmember: Tensor, fpr: float) -> tuple[float, int]:
    """(TPR, false positives allowed): the share of members scored strictly above the (k+1)-th highest
    non-member, k = floor(fpr x non-members) (ties count against the attack)."""
    k = int(fpr * len(nonmember))
    threshold = float(nonmember.double().sort(descending=True).values[min(k, len(nonmember) - 1)])
    return float((member.double() > threshold).double().mean()), k


def tpr_null(n: int, m: int, k: int, hits: int) -> dict[str, float]:
    """Under exchangeability (a model that never saw either set, anchored by one that did not either), the
    number of the n members above the (k+1)-th highest of m non-members is hypergeometric-like: at least j
    of them iff the top j + k of all n + m scores hold at least j members. The exact p-value of ``hits``, the
    expected TPR and its 95 % quantile."""
    from scipy.stats import hypergeom

    def sf(j: int) -> float:  # P(X >= j)
        return 1.0 if j <= 0 else float(hypergeom.sf(j - 1, n + m, n, min(j + k, n + m)))

    expected = sum(sf(j) for j in range(1, n + 1)) / n
    q95 = next((j for j in range(n + 1) if sf(j + 1) <= 0.05), n)
    return {"pvalue": sf(hits), "expected_tpr": expected, "tpr_95": q95 / n}


def score_histograms(
    members: dict[str, Tensor], nonmembers: dict[str, Tensor], bins: int = 24
) -> dict[str, Any]:
    """Per-example attack scores, members vs non-members per model, on shared bin edges (for the report's
    plot): {"edges": [...], role: {"members": counts, "nonmembers": counts}}; the 1st and 99th percentiles of
    all scores bound the edges, the tails are counted in the outer bins."""
    allv = torch.cat([*members.values(), *nonmembers.values()]).double()
    lo, hi = float(allv.quantile(0.01)), float(allv.quantile(0.99))
    hi = hi if hi > lo else lo + 1.0
    edges = torch.linspace(lo, hi, bins + 1)
    out: dict[str, Any] = {"edges": [float(e) for e in edges]}
    for role in members:
        out[role] = {
            part: [int(c) for c in torch.histc(x.double().clamp(lo, hi), bins, lo, hi)]
            for part, x in (("members", members[role]), ("nonmembers", nonmembers[role]))
        }
    return out


def rmia_scores(v: Verification) -> dict[str, Any] | str:
    """{"members": {role: log LR on forget}, "nonmembers": {role: log LR on held-out}} for the original and
    the candidate, anchored by the reference (cached), or why it does not apply / cannot be measured."""
    if "rmia" in v.cache:
        cached: dict[str, Any] | str = v.cache["rmia"]
        return cached
    if v.probes.heldout is None:
        out: dict[str, Any] | str = v.probes.heldout_reason or "no held-out examples"
    elif not v.has_reference:
        out = "unmeasured: the per-example attack is anchored by the retrained reference, which was not computed"
    else:
        rf, rh = v.scores("reference", "forget"), v.scores("reference", "heldout")

        def log_lr(s: Scores, r: Scores) -> Tensor:
            return (r.loss.double() - s.loss.double()) * r.tokens.double()

        roles = [r for r in v.roles if r != "reference"]
        out = {
            "members": {r: log_lr(v.scores(r, "forget"), rf) for r in roles},
            "nonmembers": {r: log_lr(v.scores(r, "heldout"), rh) for r in roles},
        }
    v.cache["rmia"] = out
    return out


def _rmia_metric(v: Verification, name: str) -> Any:
    s = rmia_scores(v)
    if isinstance(s, str):
        if s.startswith("unmeasured: "):
            return unmeasured(name, s.removeprefix("unmeasured: "))
        return not_applicable(name, s)
    fpr = FPRS[name]
    values: dict[str, float | None] = {"reference": None}
    per_role: dict[str, Any] = {}
    for role, member in s["members"].items():
        nonmember = s["nonmembers"][role]
        tpr, k = tpr_at_fpr(member, nonmember, fpr)
        values[role] = tpr
        hits = round(tpr * len(member))
        per_role[role] = {"tpr": tpr, "hits": hits, **tpr_null(len(member), len(nonmember), k, hits)}
    n, m = len(s["members"]["candidate"]), len(s["nonmembers"]["candidate"])
    for role in per_role:
        per_role[role]["auc"] = auc(s["members"][role], s["nonmembers"][role])
    return result(
        name,
        value=values["candidate"],
        values=values,
        details={
            "attack": "RMIA (offline, one reference: the retrained reference), log p_model(x) - log p_ref(x)",
            "fpr": fpr,
            "measurable_fpr": max(fpr, 1 / m) if int(fpr * m) == 0 else int(fpr * m) / m,
            "members": n,
            "nonmembers": m,
            "by_model": per_role,
            "score_histograms": score_histograms(s["members"], s["nonmembers"]),
            "reference_note": "the reference is the attack's anchor; a model retrained without the target "
            "scores by chance: TPR about the FPR (by_model's expected_tpr and tpr_95 give the exact null)",
        },
    )


@metric("mia_tpr_at_1pct_fpr")
def mia_tpr_at_1pct_fpr(v: Verification) -> Any:
    return _rmia_metric(v, "mia_tpr_at_1pct_fpr")


@metric("mia_tpr_at_01pct_fpr")
def mia_tpr_at_01pct_fpr(v: Verification) -> Any:
    return _rmia_metric(v, "mia_tpr_at_01pct_fpr")


# ---- the same attack on the retained data: did unlearning expose anyone else? ----------------------------
#
# Hayes et al. (2024) show that inexact unlearning can leave the *retained* examples more exposed (the "onion
# effect": removing some examples exposes the next ones). The same per-example attack, anchored by the same
# retrained reference, on a sample of the nodes' retained examples (members of every model here) against the
# published held-out examples outside the target (members of none): log p_model(x) - log p_ref(x). The
# reference trained on the retained examples exactly as a model retrained without the target does, so a
# model that treats them as retraining would (the reference's own seed aside) scores like chance; a candidate
# whose unlearning fitted them more closely (gradient ascent repaired with extra descent on the retained
# data) ranks them above the held-out examples and scores higher. The original's figure is beside it.


@metric("retained_mia_tpr_at_1pct_fpr")
def retained_mia_tpr_at_1pct_fpr(v: Verification) -> Any:
    name, fpr = "retained_mia_tpr_at_1pct_fpr", 0.01
    if v.target is None:
        return not_applicable(name, "no target")
    rest = v.probes.heldout_rest
    if rest is None or len(rest[next(iter(rest))]) < 2:
        return not_applicable(name, "no published held-out examples outside the target")
    if not v.has_reference:
        return unmeasured(
            name, "the per-example attack is anchored by the retrained reference, which was not computed"
        )
    members = v.retained_scores()
    if isinstance(members, str):
        return not_applicable(name, members)
    ref_h = v.scores("reference", "heldout_rest")

    def log_lr(s: Scores, r: Scores) -> Tensor:
        return (r.loss.double() - s.loss.double()) * r.tokens.double()

    values: dict[str, float | None] = {"reference": None}
    per_role: dict[str, Any] = {}
    lr_members: dict[str, Tensor] = {}
    lr_nonmembers: dict[str, Tensor] = {}
    for role in (r for r in v.roles if r != "reference"):
        m = lr_members[role] = log_lr(members[role], members["reference"])
        n = lr_nonmembers[role] = log_lr(v.scores(role, "heldout_rest"), ref_h)
        tpr, k = tpr_at_fpr(m, n, fpr)
        hits = round(tpr * len(m))
        values[role] = tpr
        per_role[role] = {"tpr": tpr, "hits": hits, "auc": auc(m, n), **tpr_null(len(m), len(n), k, hits)}
    n_members, n_non = len(members["candidate"].loss), len(ref_h.loss)
    return result(
        name,
        value=values["candidate"],
        values=values,
        details={
            "attack": "RMIA (offline, one reference: the retrained reference), log p_model(x) - log p_ref(x), "
            "on retained examples against held-out examples outside the target",
            "fpr": fpr,
            "measurable_fpr": max(fpr, 1 / n_non) if int(fpr * n_non) == 0 else int(fpr * n_non) / n_non,
            "members": n_members,
            "nonmembers": n_non,
            "member_nodes": v.cache.get("retained_nodes", []),
            "by_model": per_role,
            "score_histograms": score_histograms(lr_members, lr_nonmembers),
            "reference_note": "the reference is the attack's anchor (its own figure is chance by construction); "
            "a model that fits the retained data no more than retraining does scores about the FPR "
            "(by_model's expected_tpr and tpr_95 give the exact null)",
        },
    )
