"""The spine end to end: `commons demo run` files a proposal, takes it through review, runs the federated
unlearning job and its verification, and ends with the release gate's verdict."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from governance.cli import main


@pytest.mark.slow
def test_demo_run_from_filing_to_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMONS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("COMMONS_DATABASE_URL", raising=False)
    monkeypatch.setenv("COMMONS_ENVIRONMENT", "development")
    r = CliRunner().invoke(main, ["demo", "run", "--size", "small", "--wait", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = r.output
    for stage in ("submitted", "voting", "ratified", "job_queued", "succeeded"):
        assert stage in out, (stage, out)
    version = re.search(r"release verdict for (mv-[0-9a-f]+): (allow|deny|pending)", out)
    assert version is not None, out
    # the showcase ends as the product is meant to: verified under the calibrated defaults, released, allowed
    assert version.group(2) == "allow", out
    assert f"released {version.group(1)}" in out, out
    assert "report: " in out
    # the demo community is there for the UI: a second run reuses it
    r2 = CliRunner().invoke(main, ["demo"], catch_exceptions=False)
    assert r2.exit_code == 1 and "not empty" in r2.output
