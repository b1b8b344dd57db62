"""Issue 12: every example runs on the embedded model (no key, no server) through `loopengt
run` and exits 0; and what the examples ask of it is shaped so its runs end where the spec
says. How often its verdicts and routes are *right* is measured, not asserted: see
`benchmarks/decisions.py` (it is at chance on judging, as any 135M model is)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopengt.compile import compile_spec
from loopengt.providers.local import local_chat_model, local_model_available
from loopengt.providers.testing import TestModel
from loopengt.spec import load_spec, load_spec_text
from tests.integration.test_llama_cpp_server import EXAMPLES, INPUTS
from tests.runs.helpers import cli_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not local_model_available(), reason="the local extra is not installed"),
]

NOT_HAIKU = [
    "Autumn rain autumn rain autumn rain autumn rain autumn rain autumn rain",
    "Stocks closed higher today as investors cheered strong earnings from tech companies.",
    "Snow on the mountain\nWinter wind across the peaks\nSkiers race downhill",
    "Rain.",
]


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_every_example_exits_0_on_the_embedded_model(name: str, tmp_path: Path) -> None:
    (tmp_path / ".loopengt").mkdir()  # no configuration: the default model is `local`
    inputs = [arg for value in INPUTS[name] for arg in ("-i", value)]
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "loopengt", "run", str(EXAMPLES / f"{name}.yaml"), *inputs],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "loopengt", "runs", "--json"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    [run] = json.loads(listed.stdout)
    assert run["status"] == "completed"
    print(f"{name}: {run['status']} in {time.monotonic() - began:.1f}s")


def test_a_critic_says_what_is_wrong_before_its_verdict() -> None:
    """The verdict schema asks for feedback before pass. Asked for pass first, the embedded
    critic (temperature 0) wrote "True" as its feedback on all 4 of these non-haiku and
    passed all 4, so the poet's next round got nothing to act on. Feedback first, it said
    each was not a haiku and failed 3."""
    spec = load_spec_text(
        (EXAMPLES / "review-loop.yaml")
        .read_text()
        .replace("max_iterations: 3", "max_iterations: 1")
    )
    critic = local_chat_model(temperature=0)
    failed = 0
    for candidate in NOT_HAIKU:
        models = {"poet": TestModel(text=candidate), "critic": critic}
        state = compile_spec(spec, models=models).invoke({"input": {"subject": "autumn rain"}})
        verdict = state["verdicts"]["review"]
        assert len(str(verdict["feedback"]).split()) >= 4, (candidate, verdict)
        failed += verdict["pass"] is False
    assert failed >= 2


@pytest.mark.parametrize(
    "request_text", ["I was charged twice for my order.", "The app crashes when I log in."]
)
def test_support_handoff_ends_with_the_desk_it_hands_to(request_text: str) -> None:
    """The desks answer (`handoffs: []`): before, each could hand to the other and the
    embedded model ping-ponged until max_handoffs on 2 to 4 of 6 requests."""
    spec = load_spec(EXAMPLES / "support-handoff.yaml")
    graph = compile_spec(spec, models=local_chat_model(temperature=0))
    state = graph.invoke({"input": {"request": request_text}})

    assert state["status"] == "completed", state.get("stop_reason")
    route = list(state["visits"])
    assert route[0] == "triage" and len(route) == 2 and route[1] in ("billing", "tech"), route
    assert str(state["outputs"][route[1]]).strip()
