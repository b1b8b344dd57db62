"""benchmarks/decisions.py scores decisions right: run on the shipped TestModel, whose
decisions are known, its figures are exactly those."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "decisions.py"


def test_the_test_models_decisions_are_scored_as_they_are() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "test", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    right = {row["probe"]: (row["right"], row["cases"]) for row in json.loads(proc.stdout)}
    assert right == {
        "critic": (4, 8),  # it passes everything: right on the 4 haiku only
        "checker": (2, 4),  # the same: right on the 2 complete notes
        "gate": (2, 4),  # its judge passes the 2 sentences and the 2 slogans
        "supervisor": (3, 3),  # it takes the first choice: researcher, writer, FINISH
        "handoff": (0, 6),  # it never transfers: triage answers
    }
