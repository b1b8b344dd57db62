"""`loopengt trace RUN --format html` and the dataset report as pages rendered in headless
Chromium: no console errors, the script ran, every step named, parallel branches side by
side, and what happened to each node in its colour."""

from __future__ import annotations

import re
from pathlib import Path

from loopengt.runs.engine import RunOptions, start_run
from loopengt.tracing.events import summarize
from loopengt.tracing.html import COLOURS, trace_html
from tests.runs.helpers import loopengt
from tests.support.browser import render

REPO = Path(__file__).resolve().parents[2]
FAN_OUT = REPO / "templates" / "research-architect" / "loop.yaml"


def test_a_fan_out_run_as_a_page(tmp_path: Path) -> None:
    inputs = {"topic": "web frameworks", "questions": ["Which exist?", "Which is easiest?"]}
    result = start_run(
        FAN_OUT, inputs=inputs, options=RunOptions(model="test:delay=0.2"), root=tmp_path
    )
    assert result.status == "completed"
    page = tmp_path / "trace.html"
    made = loopengt(tmp_path, "trace", result.run_id, "--format", "html", "-o", str(page))
    assert made.returncode == 0, made.stderr

    dom, console = render(page)

    assert console == [], console
    assert 'data-ready="1"' in dom  # the page's script ran to its end
    graph = dom.split('aria-label="graph"')[1].split("</svg>")[0]
    timeline = dom.split('aria-label="timeline"')[1].split("</svg>")[0]
    for step in ("investigate", "report"):
        assert f">{step}</text>" in graph and f">{step}</text>" in timeline
        assert f'fill="{COLOURS["ok"]}"' in graph
    # the two mapped branches overlap in time: two lanes, side by side
    lanes = re.findall(r'<g data-step="investigate"><rect x="[\d.]+" y="(\d+)"', timeline)
    assert len(lanes) == 2 and lanes[0] != lanes[1]
    assert "<th>tokens in / out</th>" in dom and "<th>cost</th>" in dom
    assert "http://" not in dom.replace("http://www.w3.org", "")  # nothing fetched


def test_each_node_has_the_colour_of_what_happened() -> None:
    from loopengt.compile import compile_spec
    from tests.compilers.helpers import spec_of

    spec = spec_of(
        """
        name: two
        goal: g
        agents: [{name: a}]
        steps:
          - {name: first, prompt: x}
          - {name: second, prompt: y, depends_on: [first]}
          - {name: third, prompt: z, depends_on: [second]}
        policy: {max_turns: 5}
        """
    )
    graph = compile_spec(spec, check_models=False).get_graph()
    events = [
        {"ts": 0.0, "kind": "run_start", "session": 1},
        {"ts": 1.0, "kind": "step_start", "step": "first", "step_id": "1", "session": 1},
        {"ts": 2.0, "kind": "step_end", "step": "first", "step_id": "1", "status": "ok"},
        {"ts": 2.0, "kind": "step_start", "step": "second", "step_id": "2", "session": 1},
        {
            "ts": 3.0,
            "kind": "step_end",
            "step": "second",
            "step_id": "2",
            "status": "failed",
            "error": "boom",
        },
        {"ts": 3.0, "kind": "run_end", "status": "failed", "stop_reason": "error: boom"},
    ]
    page = trace_html(summarize(events, run_id="r1", spec="two"), graph)
    node = r'<g data-step="{}"><rect [^>]* fill="([^"]+)"'
    assert re.search(node.format("first"), page).group(1) == COLOURS["ok"]  # type: ignore[union-attr]
    assert re.search(node.format("second"), page).group(1) == COLOURS["failed"]  # type: ignore[union-attr]
    assert re.search(node.format("third"), page).group(1) == "#eceff1"  # type: ignore[union-attr]
    assert "error: boom" in page and 'class="badge" style="background:#c62828"' in page
