"""A job's footprint: CPU seconds, wall time, bytes to and from the nodes, and energy, for the job and for the
retraining reference it is measured against (as ratios). Pure Python: no torch, no Flower.

Energy is **measured** when the machine exposes Intel RAPL (``/sys/class/powercap/intel-rapl:<n>/energy_uj``,
the CPU packages' counters) and this process may read it: the packages' energy over the job's wall time.
That counts the whole CPU packages, other processes included, so on a shared machine it is an upper bound.
Otherwise it is **estimated** the way codecarbon does when it cannot read the power ("constant mode": half the
CPU's TDP while it works), per core: ``CPU seconds x 0.5 x TDP / logical cores``. TDP is
``COMMONS_CPU_TDP_WATTS`` (default :data:`DEFAULT_TDP_WATTS`, a typical server CPU); the report names which way
(``energy_method``: ``measured-rapl`` | ``estimated``) and the figures used (``energy_basis``).

The CPU seconds an estimate is based on are the job's own process (the ServerApp; in process it runs the
nodes too) plus, outside the in-process runtime, the CPU seconds the nodes reported for their work.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RAPL_ROOT = Path("/sys/class/powercap")
DEFAULT_TDP_WATTS = 85.0  # a typical server CPU's thermal design power (override: COMMONS_CPU_TDP_WATTS)
CONSTANT_LOAD = 0.5  # codecarbon's constant mode: a CPU it cannot measure draws half its TDP
_PACKAGE = re.compile(r"^intel-rapl:\d+$")  # packages only (intel-rapl:0:0 and so on are parts of them)


def tdp_watts() -> float:
    raw = os.environ.get("COMMONS_CPU_TDP_WATTS", "").strip()
    if not raw:
        return DEFAULT_TDP_WATTS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"COMMONS_CPU_TDP_WATTS must be a number of watts, got {raw!r}") from None
    if not 0 < value < 10_000:
        raise ValueError(f"COMMONS_CPU_TDP_WATTS must be between 0 and 10000 watts, got {raw!r}")
    return value


def watts_per_core() -> float:
    """The estimate's power per busy core: 0.5 x TDP / logical cores (codecarbon's constant mode, per core)."""
    return CONSTANT_LOAD * tdp_watts() / max(1, os.cpu_count() or 1)


def rapl_packages(root: Path = RAPL_ROOT) -> list[Path]:
    """The readable RAPL package zones (empty when the machine exposes none, or this process may not read them)."""
    if not root.is_dir():
        return []
    zones = []
    for zone in sorted(root.iterdir()):
        counter = zone / "energy_uj"
        if _PACKAGE.match(zone.name) and counter.is_file() and os.access(counter, os.R_OK):
            try:
                int(counter.read_text())
            except (OSError, ValueError):
                continue
            zones.append(zone)
    return zones


def _read_uj(zone: Path) -> tuple[int, int]:
    value = int((zone / "energy_uj").read_text())
    try:
        wrap = int((zone / "max_energy_range_uj").read_text())
    except (OSError, ValueError):
        wrap = 0
    return value, wrap


class EnergyMeter:
    """Start it before the job, ``stop(cpu_s)`` after: the job's energy in joules, how it was obtained, and the
    basis (the RAPL zones read, or the estimate's constants)."""

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.zones = rapl_packages(root)
        self.start: dict[Path, int] = {}
        for zone in self.zones:
            try:
                self.start[zone] = _read_uj(zone)[0]
            except (OSError, ValueError):
                self.start = {}
                break
        self.t0 = time.perf_counter()

    def stop(self, cpu_s: float) -> tuple[float, str, dict[str, Any]]:
        if self.start:
            try:
                total = 0
                for zone, before in self.start.items():
                    after, wrap = _read_uj(zone)
                    total += after - before if after >= before else after + wrap - before
                return (
                    total / 1e6,
                    "measured-rapl",
                    {"zones": [z.name for z in self.start], "wall_s": time.perf_counter() - self.t0},
                )
            except (OSError, ValueError):
                pass
        return estimate(cpu_s)


def estimate(cpu_s: float) -> tuple[float, str, dict[str, Any]]:
    """Energy from CPU seconds (see the module docstring)."""
    w = watts_per_core()
    basis = {
        "cpu_s": cpu_s,
        "watts_per_core": w,
        "tdp_watts": tdp_watts(),
        "load": CONSTANT_LOAD,
        "cores": os.cpu_count() or 1,
        "source": "codecarbon's constant mode (half the CPU's TDP), per core",
    }
    return max(0.0, cpu_s) * w, "estimated", basis


# ---- the footprint as reports and pages show it ------------------------------------------------------------

FIGURES = ("cpu_s", "wall_s", "bytes_to_nodes", "bytes_from_nodes", "energy_j")


@dataclass(frozen=True)
class Figure:
    name: str
    job: float | None
    reference: float | None

    @property
    def ratio(self) -> float | None:
        if self.job is None or not self.reference:
            return None
        return self.job / self.reference


def _num(cost: Mapping[str, Any] | None, key: str) -> float | None:
    if not cost:
        return None
    v = cost.get(key)
    if key in ("bytes_to_nodes", "bytes_from_nodes") and v is None and cost.get("rounds"):
        v = sum(float(r.get(key) or 0) for r in cost["rounds"] if isinstance(r, Mapping))
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def footprint(job: Mapping[str, Any] | None, reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{figures: [{name, job, reference, ratio}], energy_method, energy_basis, reference_energy_method}``
    from two ``JobResult.cost`` records (the reference's when it was computed); JSON-able."""
    figures = [Figure(n, _num(job, n), _num(reference, n)) for n in FIGURES]
    return {
        "figures": [
            {"name": f.name, "job": f.job, "reference": f.reference, "ratio": f.ratio} for f in figures
        ],
        "energy_method": (job or {}).get("energy_method"),
        "energy_basis": (job or {}).get("energy_basis"),
        "reference_energy_method": (reference or {}).get("energy_method") if reference else None,
        "has_reference": bool(reference),
    }
