"""The regression gate: a dataset report compared with a saved baseline report.

A case regressed when it passed in the baseline and fails now, when its judge score dropped
by more than ``tolerance``, when it errors now and did not, or when its cost or latency grew
beyond their relative tolerances (latency with a small absolute slack, so a 5 ms case that
takes 8 ms is not a regression). A baseline case missing from the report is a regression too:
a dataset that shrank must not pass quietly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopengt.errors import UserInputError

LATENCY_SLACK_S = 0.5


@dataclass(frozen=True)
class Tolerances:
    score: float = 0.1
    """Largest allowed drop of a case's judge score (0 to 1)."""
    cost: float = 0.25
    """Largest allowed relative growth of a case's cost (0.25: 25% more)."""
    latency: float = 1.0
    """Largest allowed relative growth of a case's latency (1.0: twice as slow)."""


@dataclass(frozen=True)
class Regression:
    case: str
    why: str

    def line(self) -> str:
        return f"{self.case}: {self.why}"


def read_baseline(path: Path | str) -> dict[str, Any]:
    """A saved report; `UserInputError` (exit 2) when missing or not a report."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserInputError(
            f"--baseline {path}: no such file (save one with --save-baseline)"
        ) from None
    except OSError as exc:
        raise UserInputError(f"--baseline {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserInputError(
            f"--baseline {path}: not JSON ({exc.msg}, line {exc.lineno})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise UserInputError(f"--baseline {path}: not a loopengt eval report (no 'cases' list)")
    return data


def compare(
    report: dict[str, Any], baseline: dict[str, Any], tolerances: Tolerances
) -> list[Regression]:
    """Every regression of ``report`` against ``baseline`` (both `Report.as_dict()` shaped)."""
    now = {c["id"]: c for c in report["cases"] if isinstance(c, dict) and "id" in c}
    out: list[Regression] = []
    for before in baseline["cases"]:
        if not isinstance(before, dict) or "id" not in before:
            continue
        case_id = before["id"]
        after = now.get(case_id)
        if after is None:
            out.append(Regression(case_id, "missing from this run (it is in the baseline)"))
            continue
        out += [Regression(case_id, why) for why in _case(before, after, tolerances)]
    return out


def _case(before: dict[str, Any], after: dict[str, Any], tol: Tolerances) -> list[str]:
    reasons = []
    if after.get("error") and not before.get("error"):
        reasons.append(f"new error: {after['error']}")
    elif before.get("passed") and not after.get("passed"):
        failed = [c["name"] for c in after.get("checks", []) if not c.get("passed")]
        failed += [after[k] for k in ("judge_error",) if after.get(k)]
        reasons.append("passed before, fails now" + (f": {'; '.join(failed)}" if failed else ""))
    old, new = before.get("score"), after.get("score")
    if isinstance(old, int | float) and isinstance(new, int | float) and old - new > tol.score:
        reasons.append(f"score dropped {old:.2f} → {new:.2f} (tolerance {tol.score:.2f})")
    old_m, new_m = before.get("metrics") or {}, after.get("metrics") or {}
    old_cost, new_cost = old_m.get("cost_usd") or 0.0, new_m.get("cost_usd") or 0.0
    if new_cost > old_cost * (1 + tol.cost) and new_cost - old_cost > 1e-9:
        reasons.append(f"cost ${old_cost:.4f} → ${new_cost:.4f} (tolerance +{tol.cost:.0%})")
    old_lat, new_lat = old_m.get("latency_s") or 0.0, new_m.get("latency_s") or 0.0
    if new_lat > old_lat * (1 + tol.latency) + LATENCY_SLACK_S:
        reasons.append(f"latency {old_lat:.2f}s → {new_lat:.2f}s (tolerance +{tol.latency:.0%})")
    return reasons
