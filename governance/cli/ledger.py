"""`commons data-source ledger`: the answer to "is my data in the released model?" for people, and the check of
the audit proofs behind it (each entry's inclusion in the log the service's signed checkpoint commits to)."""

from __future__ import annotations

from typing import Any

import click


def verify_ledger_proofs(body: dict[str, Any], verifier_key: str) -> int:
    """Check every proof of a ledger answer against its checkpoint, signed by the audit key ``verifier_key``
    (as `commons audit prove` does); the number verified. A proof that fails ends the command (exit 1)."""
    from governance.audit import merkle
    from governance.audit.canonical import dumps_plain
    from governance.audit.checkpoint import CheckpointError, VerifierKey, open_checkpoint

    try:
        cp = open_checkpoint(body["checkpoint"]["checkpoint"], VerifierKey.parse(verifier_key), None)
    except (CheckpointError, ValueError, KeyError) as exc:
        raise click.ClickException(f"the ledger's checkpoint does not verify: {exc}") from None
    for p in body.get("proofs", []):
        leaf = merkle.leaf_hash(dumps_plain(p["entry"]))
        hashes = [bytes.fromhex(h) for h in p["inclusion_proof"]["hashes"]]
        if leaf.hex() != p["leaf_hash"] or not merkle.verify_inclusion(
            int(p["seq"]), cp.size, leaf, hashes, cp.root_hash
        ):
            raise click.ClickException(
                f"audit entry {p['seq']} does not verify against the signed checkpoint"
            )
    return len(body.get("proofs", []))


def render_ledger(b: dict[str, Any], verified: int) -> str:
    ds = b["data_source"]
    lines = [
        f"data source #{ds['id']} {b['federation_name']} (consent {ds['consent_state']})",
        f"in the released model: {b['answer']}"
        + (f" ({b['released_version']})" if b["released_version"] else ""),
        f"  {b['explanation']}",
    ]
    if b["trained_in"]:
        lines.append("trained on it: " + ", ".join(f"{v['version']} ({v['state']})" for v in b["trained_in"]))
    for u in b["unlearned_by"]:
        verdict = {True: "passed", False: "failed", None: "not verified yet"}[u["passed"]]
        who = f" for proposal {u['proposal_id']}" if u["proposal_id"] is not None else ""
        lines.append(f"unlearned by: {u['version']}{who} ({u['state']}; verification {verdict})")
    lines.append("released versions holding it: " + (", ".join(b["released_containing"]) or "none"))
    if b["released_without"]:
        lines.append("released versions without it: " + ", ".join(b["released_without"]))
    for c in b["contributions"]:
        share = f", {100 * c['share']:.1f} % of the improvement" if c["share"] is not None else ""
        lines.append(
            f"contribution of {c['node']} to {c['model_version']}: {c['score']:+.4f} {c['utility']}{share}"
        )
    lines.append(
        f"{verified} audit entries verified against the signed checkpoint of {b['checkpoint']['tree_size']} entries"
    )
    return "\n".join(lines)
