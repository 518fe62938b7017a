"""The docs stay honest: every setting has a row in docs/operations.md's settings table."""

from __future__ import annotations

import re
from pathlib import Path

from governance.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented() -> None:
    operations = (DOCS / "operations.md").read_text()
    # a row's first cell names one setting or several: | `COMMONS_HOST`, `COMMONS_PORT` | ...
    documented = {
        name
        for cell in re.findall(r"^\| (`COMMONS_[^|]+)\|", operations, re.M)
        for name in re.findall(r"`(COMMONS_\w+)`", cell)
    }
    prefix = str(Settings.model_config.get("env_prefix", ""))
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    missing, unknown = sorted(fields - documented), sorted(documented - fields)
    assert not missing, f"settings without a row in docs/operations.md: {missing}"
    assert not unknown, f"rows in docs/operations.md for settings that do not exist: {unknown}"
