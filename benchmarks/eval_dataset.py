"""Dataset evals: how long `loopengt eval --dataset` takes for many cases.

    uv run python benchmarks/eval_dataset.py [--cases 50] [--steps 3] [--concurrency 10]
                                             [--delay 0.2] [--quick] [--json]

Two figures, each through the same Python API the CLI calls (`arun_dataset`: every case a
real, checkpointed run on the SQLite storage of a fresh project, with its trace written,
metrics read back and expectations checked):

1. **replay**: ``--cases`` cases of a ``--steps``-step sequential spec answered from
   cassettes (recorded first with the test model, not timed). Target: under 10 s in all.
2. **slow model**: the same cases on ``test:delay=D`` (every model call an async sleep of
   ``--delay`` seconds) at ``--concurrency``. The ideal is ``cases x steps x delay /
   concurrency`` (the model time alone, perfectly packed). Target: wall ≤ 1.5x the ideal.

``--quick`` (a CI smoke test: 8 cases, no verdict) checks the script still works.
``--json`` prints only the result rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Row, emit

from loopengt.config import Config
from loopengt.evals.suite import arun_dataset


def write_project(root: Path, cases: int, steps: int) -> Path:
    lines = [
        "name: bench",
        "goal: Answer the question in a few careful steps.",
        "inputs:",
        "  question: {description: The question.}",
        "agents:",
        "  - name: worker",
        "steps:",
    ]
    for i in range(1, steps + 1):
        after = f", depends_on: [s{i - 1}]" if i > 1 else ""
        source = "{{input.question}}" if i == 1 else f"{{{{s{i - 1}}}}}"
        lines.append(f'  - {{name: s{i}, prompt: "Step {i} on: {source}"{after}}}')
    lines.append("policy: {max_turns: 50}")
    (root / "loop.yaml").write_text("\n".join(lines) + "\n")
    dataset = {
        "spec": "loop.yaml",
        "cases": [
            {
                "id": f"case-{n:03d}",
                "inputs": {"question": f"question number {n}"},
                "expect": {"output": {"contains": "test reply"}},
            }
            for n in range(cases)
        ],
    }
    path = root / "cases.yaml"
    path.write_text(json.dumps(dataset))
    return path


async def timed(root: Path, dataset: Path, **kwargs: Any) -> tuple[float, int]:
    config = Config.load(root)
    started = time.perf_counter()
    report = await arun_dataset(dataset, config=config, **kwargs)
    wall = time.perf_counter() - started
    failed = len(report.failed)
    if failed:
        first = report.failed[0].as_dict()
        raise SystemExit(f"{failed} case(s) failed, e.g. {json.dumps(first)[:400]}")
    return wall, len(report.cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--quick", action="store_true", help="8 cases, no verdict (CI)")
    parser.add_argument("--json", action="store_true", help="print only the result rows")
    args = parser.parse_args()
    if args.quick:
        args.cases = 8
    rows = []
    judged = not args.quick
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = write_project(root, args.cases, args.steps)
        tapes = root / "tapes"
        asyncio.run(timed(root, dataset, model="test", record_dir=tapes, concurrency=10))
        wall, n = asyncio.run(timed(root, dataset, replay_dir=tapes, concurrency=10))
        rows.append(
            Row(f"dataset_eval_{n}_replay", "s", None, wall, 10.0, "value<=", judged=judged)
        )
        model = f"test:delay={args.delay}"
        wall, n = asyncio.run(timed(root, dataset, model=model, concurrency=args.concurrency))
        ideal = n * args.steps * args.delay / args.concurrency
        note = f"{n} cases x {args.steps} steps, {args.delay * 1000:.0f} ms calls, "
        note += f"concurrency {args.concurrency}; baseline = ideal packing"
        rows.append(Row("dataset_eval_slow_model", "s", ideal, wall, 1.5, note=note, judged=judged))
    emit(rows, args.json)


if __name__ == "__main__":
    main()
