"""Every performance figure of loopengt in one table, each against a baseline measured in
the same run on this machine.

    uv run python benchmarks/run_all.py [--quick] [--only SCRIPT] [--out FILE]

Runs each script below in its own process (`--json`), one after the other so they do not
compete for the cores, prints one table (figure, baseline, loopengt, ratio, target, result)
and writes the rows to `benchmarks/results.json`. `--quick` uses tiny counts: it proves the
scripts still work (CI runs it) and gives no verdicts; its rows are not written unless
`--out` says where. Exit 1 when a script breaks, or, in a full run, a target is missed.
Run it on a quiet machine, after `uv sync --compile-bytecode`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import table

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "compile_overhead",  # per-run overhead in memory and with SQLite + trace; fan-out overlap
    "concurrency",  # 200 concurrent runs: wall time and RSS
    "cli_timings",  # --help, run on replay, validate, compile time and its growth
    "resume_kill",  # kill -9 mid-run, resume: no finished step's call repeated
    "context_budget",  # a growing tool loop: every call within policy.context_budget
    "eval_dataset",  # dataset evals on replay and on a slow model
    "local_tokens",  # the embedded model's tokens/s through loopengt
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def run(script: str, quick: bool) -> tuple[list[dict[str, Any]], str | None]:
    """The script's rows, or why it produced none."""
    argv = [sys.executable, str(HERE / f"{script}.py"), "--json", *(["--quick"] if quick else [])]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, cwd=HERE.parent)
    seconds = time.perf_counter() - started
    print(f"  {script}: {seconds:.0f} s", file=sys.stderr, flush=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [], f"{script} failed (exit {done.returncode}): {tail}"
    try:
        rows = json.loads(done.stdout)
    except json.JSONDecodeError:
        return [], f"{script} printed no JSON rows"
    return [{**row, "script": script} for row in rows], None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts, no verdicts (CI)")
    parser.add_argument("--only", choices=SCRIPTS, action="append", help="run only this script")
    parser.add_argument("--out", type=Path, help="where to write the rows (JSON)")
    args = parser.parse_args()
    print(f"machine: {machine()}", file=sys.stderr)
    rows, broken = [], []
    for script in args.only or SCRIPTS:
        found, problem = run(script, args.quick)
        rows += found
        if problem:
            broken.append(problem)
    print(f"\nloopengt benchmarks{' (--quick: no verdicts)' if args.quick else ''}")
    print(f"machine: {machine()}\n")
    print(table(rows))
    out = args.out or (None if args.quick else HERE / "results.json")
    if out is not None:
        out.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nrows written to {out}")
    for problem in broken:
        print(f"error: {problem}", file=sys.stderr)
    missed = [row["name"] for row in rows if row["pass"] is False]
    if missed:
        print(f"missed: {', '.join(missed)}", file=sys.stderr)
    sys.exit(1 if broken or missed else 0)


if __name__ == "__main__":
    main()
