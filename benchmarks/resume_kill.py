"""A run killed with SIGKILL and resumed: are the model calls of finished steps repeated?

    uv run python benchmarks/resume_kill.py [--steps 6] [--trials 1] [--quick] [--json]

A real kill of a real process. An OpenAI-compatible server on 127.0.0.1
(`tests.support.openai_server.ScriptedOpenAIServer`) answers every chat completion with a
short text after 0.3 s and keeps every request. A fresh project points at it
(``.loopengt/config.toml``: ``[llm] model = "openai:bench"``, ``base_url``) and holds a
``--steps``-step sequential spec, one model call per step. For k in (2, 4):

1. ``loopengt run spec.yaml --run-id RID`` starts as a subprocess; its trace
   (``.loopengt/runs/RID.jsonl``, one flushed line per event) is polled until k steps have
   a ``step_end`` and step k+1's request has reached the server. The run checkpoints with
   ``durability="sync"`` (a superstep is on disk before the next starts), so the k finished
   steps are checkpointed, and the kill lands in the middle of step k+1's model call;
2. the process gets SIGKILL, then ``loopengt resume RID`` must complete the run;
3. every request is attributed to its step (``Your task (sN)`` in its prompt). The run
   before the kill must have made exactly one call per finished step (else the count below
   means nothing and the script fails). The in-flight step's call was never checkpointed,
   so it is legitimately made again; a finished step's call made again is a repeat.

Row ``resume_repeated_calls``: the repeats of finished steps, summed over the k's (and
``--trials`` kills each). Target: exactly 0. ``--quick`` (CI smoke test: k = 2 only, no
verdict) proves the script works. ``--json`` prints only the rows; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import Row, chain_spec, emit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root: tests.support
from tests.support.openai_server import Delayed, ScriptedOpenAIServer, last_user_text

REPLY_DELAY = 0.3
TASK = re.compile(r"Your task \((s\d+)\)")
DEADLINE = 120.0  # seconds a run or a resume may take before the script gives up


class Broken(Exception):
    """Something the benchmark needs did not work: exit 1, not a missed target."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def loopengt_command() -> list[str]:
    script = Path(sys.executable).with_name("loopengt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "loopengt"]


def child_env() -> dict[str, str]:
    """This environment, minus what could point the runs at another model or server."""
    drop = {"OPENAI_BASE_URL", "OPENAI_API_KEY", "LOOPENGT_MODEL", "ANTHROPIC_API_KEY"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def reply(request: dict[str, Any]) -> Delayed:
    return Delayed("short answer", REPLY_DELAY)


def step_of(request: dict[str, Any]) -> str:
    found = TASK.search(last_user_text(request))
    if found is None:
        raise Broken(f"a request names no step: {last_user_text(request)[:200]!r}")
    return found.group(1)


def trace_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the line being written
    return events


def wait_then_kill(
    proc: subprocess.Popen[bytes], trace: Path, server: ScriptedOpenAIServer, k: int
) -> list[str]:
    """SIGKILL ``proc`` once k steps ended and step k+1's call is in flight; the ended steps."""
    deadline = time.monotonic() + DEADLINE
    while True:
        ended = [e["step"] for e in trace_events(trace) if e.get("kind") == "step_end"]
        if len(ended) >= k and server.request_count > k:
            break
        if proc.poll() is not None:
            err = (trace.parents[2] / "run.err").read_text(errors="replace")[-2000:]
            raise Broken(f"the run exited ({proc.returncode}) before {k} steps ended:\n{err}")
        if time.monotonic() > deadline:
            raise Broken(f"no {k} finished steps after {DEADLINE:g} s")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the ended steps, read again: a step_end written between the poll and the kill counts
    return [e["step"] for e in trace_events(trace) if e.get("kind") == "step_end"]


def trial(root: Path, steps: int, k: int) -> tuple[int, int, int]:
    """Kill after k steps, resume; (repeats of finished steps, all repeats, requests)."""
    project, run_id, cli = root / f"k{k}-{time.monotonic_ns()}", f"bench-k{k}", loopengt_command()
    (project / ".loopengt").mkdir(parents=True)
    (project / "spec.yaml").write_text(chain_spec(steps))
    with ScriptedOpenAIServer(responder=reply) as server:
        config = f'[llm]\nmodel = "openai:bench"\nbase_url = "{server.base_url}"\n'
        (project / ".loopengt" / "config.toml").write_text(config)
        argv = [*cli, "run", "spec.yaml", "--run-id", run_id]
        where: dict[str, Any] = {"cwd": project, "env": child_env()}
        with (project / "run.err").open("wb") as err:  # a file: a full pipe would block it
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, **where)
            trace = project / ".loopengt" / "runs" / f"{run_id}.jsonl"
            try:
                finished = wait_then_kill(proc, trace, server, k)
            finally:  # never leave the run behind, whatever went wrong
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
        before = Counter(step_of(r) for r in server.requests)
        if any(before[s] != 1 for s in finished):
            raise Broken(f"not one call per finished step before the kill: {dict(before)}")
        resume = [*cli, "resume", run_id, "--json"]
        done = subprocess.run(resume, capture_output=True, text=True, timeout=DEADLINE, **where)
        if done.returncode != 0:
            raise Broken(f"`loopengt resume {run_id}` exited {done.returncode}:\n{done.stderr}")
        result = json.loads(done.stdout)
        outputs = sorted(result.get("outputs") or {})
        if result.get("status") != "completed" or len(outputs) != steps:
            raise Broken(f"the resumed run did not complete: {done.stdout[:1000]}")
        total = Counter(step_of(r) for r in server.requests)
        if server.errors:
            raise Broken(f"the server saw problems: {server.errors}")
    missing = [f"s{i}" for i in range(1, steps + 1) if not total[f"s{i}"]]
    if missing:
        raise Broken(f"no model call for steps {missing}")
    repeats = sum(total[s] - 1 for s in set(finished))
    log(f"  k={k}: finished before the kill {finished}, calls per step {dict(total)}")
    return repeats, sum(total.values()) - steps, sum(total.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="steps of the sequential spec")
    parser.add_argument("--trials", type=int, default=1, help="kills per k")
    parser.add_argument("--quick", action="store_true", help="CI smoke: k=2 only, no verdict")
    parser.add_argument("--json", action="store_true", help="print only the rows, as JSON")
    args = parser.parse_args()
    ks = (2,) if args.quick else (2, 4)
    if max(ks) >= args.steps:
        parser.error(f"--steps must be more than {max(ks)}")
    results: list[tuple[int, int, int]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="loopengt-kill-") as tmp:
            for k in ks:
                for _ in range(args.trials):
                    log(f"kill after {k} of {args.steps} steps, then resume ...")
                    results.append(trial(Path(tmp), args.steps, k))
    except (Broken, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        log(f"resume_kill: broken: {exc}")
        sys.exit(1)
    repeated, all_repeats, requests = (sum(column) for column in zip(*results, strict=True))
    runs = len(ks) * args.trials
    note = (
        f"k={', '.join(map(str, ks))} × {args.trials} trial(s), n={args.steps}: {requests} "
        f"requests for {runs * args.steps} steps ({all_repeats} repeated incl. in-flight)"
    )
    row = Row("resume_repeated_calls", "calls", None, repeated, 0, "value==", note, not args.quick)
    emit([row], args.json)


if __name__ == "__main__":
    main()
