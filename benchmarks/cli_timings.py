"""How long the `loopengt` command takes: start-up, a replayed run, validate, and compile.

    uv run python benchmarks/cli_timings.py [--quick] [--json]

Bytecode: a fair measure needs compiled ``.pyc`` files, as an installed command has. ``uv
sync --compile-bytecode`` compiles the site-packages, but with ``PYTHONDONTWRITEBYTECODE=1``
set (as on some machines) an editable loopengt's own ``.pyc`` files go missing or stale as
its sources change, and every process then compiles those modules again. So the processes
timed here read and write their bytecode under a temporary ``PYTHONPYCACHEPREFIX`` (with
``PYTHONDONTWRITEBYTECODE`` unset), filled by the untimed warm-up runs (a few seconds,
once). Running after ``uv sync --compile-bytecode``, as `run_all.py` asks, is harmless but
no longer needed for these figures.

Each process figure is the median wall time of N fresh processes (the venv's ``loopengt``
script next to ``sys.executable``, or ``python -m loopengt`` without one), started in a
temporary project folder (so ``.loopengt/`` lands there) after one untimed warm-up, the
baseline interleaved with it (A/B, B/A, ...) so drift hits both alike. Rows:

- ``help_cold_start``: ``loopengt --help``; baseline ``python -c pass``. Target ≤ 0.3 s.
- ``run_replay_process``: ``loopengt run spec.yaml --replay cassette.yaml`` of a 3-step
  sequential spec (the cassette recorded first with ``--model test --record``, not timed):
  the whole run, checkpointed on SQLite and traced. Baseline ``python -c "import
  langgraph.graph"``, what any LangGraph program pays before its first node. Target ≤ 1.0×.
- ``validate_40_steps``: ``loopengt validate`` of a 40-step sequential spec. Target ≤ 0.6 s.
- ``compile_200_steps``: in this process, ``compile_spec(load_spec_text(text), models=m)``
  of a 200-step sequential spec; baseline the same for 50 steps. Target ≤ 0.5 s.
- ``compile_growth_50_to_200``: t(200) / t(50), for 4× the steps. Target ≤ 4.5 (linear).

N is 15 (start-up), 10 (run, validate) and 7 (compile); ``--quick`` (a CI smoke test: 3, 2,
2 and 2, no verdict) only proves the script works. ``--json`` prints only the rows.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common import Row, chain_spec, emit, instant_model

HELP_TARGET, RUN_TARGET, VALIDATE_TARGET = 0.3, 1.0, 0.6
COMPILE_TARGET, GROWTH_TARGET = 0.5, 4.5
FULL = {"help": 15, "run": 10, "validate": 10, "compile": 7}
QUICK = {"help": 3, "run": 2, "validate": 2, "compile": 2}


class Broken(Exception):
    """Something the benchmark needs did not work: exit 1, not a missed target."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def loopengt_command() -> list[str]:
    script = Path(sys.executable).with_name("loopengt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "loopengt"]


ENV: dict[str, str] = {}
"""The timed processes' environment (their own bytecode cache): set once by ``main``."""


def bytecode_env(pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(pycache)}


def run_once(argv: Sequence[str], cwd: Path) -> float:
    """Wall seconds of one process; a non-zero exit is a broken benchmark."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise Broken(f"`{' '.join(argv)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall


def process_medians(
    argv: Sequence[str], baseline: Sequence[str] | None, n: int, cwd: Path
) -> tuple[float, float | None]:
    """Median wall time of ``argv`` (and of ``baseline``), after a warm-up, interleaved."""
    sides = [argv] if baseline is None else [argv, baseline]
    times: list[list[float]] = [[] for _ in sides]
    for side in sides:
        run_once(side, cwd)  # warm-up, not timed: bytecode, the OS page cache
    for i in range(n):
        order = range(len(sides)) if i % 2 == 0 else reversed(range(len(sides)))
        for j in order:
            times[j].append(run_once(sides[j], cwd))
    medians = [statistics.median(t) for t in times]
    return medians[0], (medians[1] if baseline is not None else None)


def compile_median(steps: int, n: int) -> float:
    """Median seconds to load and compile a ``steps``-step sequential spec, in-process."""
    from loopengt import compile_spec
    from loopengt.spec import load_spec_text

    text, model = chain_spec(steps), instant_model()
    times = []
    for _ in range(n):
        gc.collect()
        started = time.perf_counter()
        compile_spec(load_spec_text(text), models=model)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def help_rows(cli: list[str], n: int, project: Path, judged: bool) -> list[Row]:
    value, base = process_medians([*cli, "--help"], [sys.executable, "-c", "pass"], n, project)
    return [Row("help_cold_start", "s", base, value, HELP_TARGET, "value<=", judged=judged)]


def run_rows(cli: list[str], n: int, project: Path, judged: bool) -> list[Row]:
    (project / "spec.yaml").write_text(chain_spec(3))
    run_once([*cli, "run", "spec.yaml", "--model", "test", "--record", "cassette.yaml"], project)
    if not (project / "cassette.yaml").exists():
        raise Broken("`loopengt run --record cassette.yaml` wrote no cassette")
    replay = [*cli, "run", "spec.yaml", "--replay", "cassette.yaml"]
    imports = [sys.executable, "-c", "import langgraph.graph"]
    value, base = process_medians(replay, imports, n, project)
    note = f"loopengt run {value:.3f} s, import langgraph.graph {base or 0:.3f} s"
    return [Row("run_replay_process", "s", base, value, RUN_TARGET, note=note, judged=judged)]


def validate_rows(cli: list[str], n: int, project: Path, judged: bool) -> list[Row]:
    (project / "spec40.yaml").write_text(chain_spec(40))
    value, _ = process_medians([*cli, "validate", "spec40.yaml"], None, n, project)
    return [Row("validate_40_steps", "s", None, value, VALIDATE_TARGET, "value<=", judged=judged)]


def compile_rows(n: int, judged: bool) -> list[Row]:
    compile_median(3, 1)  # warm-up: imports and caches
    t50, t200 = compile_median(50, n), compile_median(200, n)
    note = f"t50 {t50 * 1e3:.1f} ms, t200 {t200 * 1e3:.1f} ms"
    return [
        Row("compile_200_steps", "s", t50, t200, COMPILE_TARGET, "value<=", judged=judged),
        Row(
            "compile_growth_50_to_200",
            "×",
            None,
            t200 / t50,
            GROWTH_TARGET,
            "value<=",
            note,
            judged,
        ),
    ]


def measure(quick: bool, project: Path) -> list[Row]:
    counts, judged, cli = QUICK if quick else FULL, not quick, loopengt_command()
    log("measuring loopengt --help ...")
    rows = help_rows(cli, counts["help"], project, judged)
    log("measuring loopengt run --replay ...")
    rows += run_rows(cli, counts["run"], project, judged)
    log("measuring loopengt validate ...")
    rows += validate_rows(cli, counts["validate"], project, judged)
    log("measuring compile_spec ...")
    rows += compile_rows(counts["compile"], judged)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: tiny counts, no verdict")
    parser.add_argument("--json", action="store_true", help="print only the rows, as JSON")
    args = parser.parse_args()
    try:
        with tempfile.TemporaryDirectory(prefix="loopengt-cli-") as tmp:
            ENV.update(bytecode_env(Path(tmp) / "pycache"))
            (Path(tmp) / "project").mkdir()
            rows = measure(args.quick, Path(tmp) / "project")
    except (Broken, subprocess.TimeoutExpired) as exc:
        log(f"cli_timings: broken: {exc}")
        sys.exit(1)
    emit(rows, args.json)


if __name__ == "__main__":
    main()
