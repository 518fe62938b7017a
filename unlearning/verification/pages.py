"""The report's HTML page, rendered once when the report is made and kept in the artifact store.

``<artifact root>/reports/<key>.html``, where the key is the SHA-256 of the report's canonical JSON without its
``signature`` (the verifying worker signs the report after rendering; the page does not change with the
signature). Reading a stored page writes nothing; a report whose page was never stored (attached from
elsewhere, or made before pages were stored) is rendered on the fly, which takes milliseconds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unlearning.contract import sha256_json
from unlearning.verification.spec import VerificationReport

SIGNATURE = "signature"


def page_key(report: VerificationReport | Mapping[str, Any]) -> str:
    r = report.to_dict() if isinstance(report, VerificationReport) else dict(report)
    return sha256_json({k: v for k, v in r.items() if k != SIGNATURE})


def page_path(artifact_root: str | Path, report: VerificationReport | Mapping[str, Any]) -> Path:
    return Path(artifact_root) / "reports" / f"{page_key(report)}.html"


def store_page(artifact_root: str | Path, report: VerificationReport | Mapping[str, Any]) -> Path:
    """Render the report's page and write it atomically under the store's ``reports/``; returns its path."""
    from unlearning.verification.html import render_html

    r = report.to_dict() if isinstance(report, VerificationReport) else dict(report)
    path = page_path(artifact_root, r)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".page-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_html(r))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def stored_page(artifact_root: str | Path, report: VerificationReport | Mapping[str, Any]) -> str | None:
    """The stored page of exactly this report, or None (never writes)."""
    path = page_path(artifact_root, report)
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None


def report_page(artifact_root: str | Path | None, report: VerificationReport | Mapping[str, Any]) -> str:
    """The stored page of ``report`` when there is one, else the page rendered now (never writes)."""
    if artifact_root is not None:
        page = stored_page(artifact_root, report)
        if page is not None:
            return page
    from unlearning.verification.html import render_html

    r = report.to_dict() if isinstance(report, VerificationReport) else dict(report)
    return render_html(r)
