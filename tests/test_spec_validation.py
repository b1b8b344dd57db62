"""LoopSpec validation: one test per rule, each asserting the exact problem lines.

Every problem is one line ``FILE:LINE:COL: field.path: message``; a spec with several
problems reports all of them at once, sorted by position.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from loopengt.spec import LoopSpec, Problem, SpecError, check_spec, load_spec, load_spec_text

ROOT = Path(__file__).resolve().parent.parent
SEED_FIXTURE = ROOT / "tests" / "fixtures" / "seed-0.1.0.yaml"


def yaml(text: str) -> str:
    """The YAML of a spec written indented inside a test."""
    return textwrap.dedent(text)


def problems(text: str) -> list[str]:
    """The problem lines for an (indented) spec that must fail to validate."""
    with pytest.raises(SpecError) as info:
        load_spec_text(yaml(text), filename="loop.yaml")
    return info.value.lines()


def valid(text: str) -> LoopSpec:
    return load_spec_text(yaml(text), filename="loop.yaml")


# --- YAML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """\
            name: demo
            goal: Summarise
            agents:
              - name: writer
               model: local
            steps: []
            """,
            "loop.yaml:5:4: YAML syntax error: "
            "expected <block end>, but found '<block mapping start>'",
            id="indentation",
        ),
        pytest.param(
            "name: demo\ngoal: Summarise\nagents:\n\t- name: writer\n",
            "loop.yaml:4:1: YAML syntax error: found character '\\t' that cannot start any token",
            id="tab",
        ),
        pytest.param(
            """\
            name: demo
            goal: Summarise
            agents: [{name: writer}
            """,
            "loop.yaml:4:1: YAML syntax error: expected ',' or ']', but got '<stream end>'",
            id="unclosed-flow-sequence",
        ),
    ],
)
def test_yaml_syntax_error(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_control_character_is_one_line_with_its_position() -> None:
    assert problems("name: demo\ngoal: ring \x07 the bell\n") == [
        "loop.yaml:2:12: YAML syntax error: character #x0007 is not allowed"
    ]


def test_an_escape_beyond_unicode_is_one_line_with_its_position() -> None:
    # found by the fuzzer: PyYAML's chr() of the escape raised a bare ValueError
    assert problems('name: demo\ngoal: "ring \\U00111111 it"\n') == [
        "loop.yaml:2:13: YAML syntax error: the escape \\U00111111 is beyond U+10FFFF, the "
        "last character"
    ]


def test_a_step_name_that_is_a_list_is_one_problem() -> None:
    # found by the fuzzer: the prompt's {{a}} check looked the list up as a step (TypeError)
    assert problems(
        """\
        name: demo
        goal: g
        agents: [{name: a}]
        steps:
          - {name: a, prompt: go}
          - {name: [null], prompt: "Use {{a}}"}
        """
    ) == ["loop.yaml:6:12: steps[1].name: must be a valid string, got list"]


def test_duplicate_yaml_key() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents:
          - name: writer
            model: openai:gpt-4o-mini
            model: local
        steps: [{name: draft}]
        """
    ) == ["loop.yaml:6:5: agents[0].model: duplicate key 'model'"]


def test_python_tag_is_refused() -> None:
    assert problems(
        """\
        name: !!python/object/apply:os.system ["echo hi"]
        goal: Summarise
        """
    ) == [
        "loop.yaml:1:7: name: unsupported YAML tag "
        "'tag:yaml.org,2002:python/object/apply:os.system' (only plain data)"
    ]


@pytest.mark.parametrize(
    ("tagged", "tag"),
    [
        ("!!python/object/apply:os.system [{cmd}]", "python/object/apply:os.system"),
        ("!!python/object/new:os.system [{cmd}]", "python/object/new:os.system"),
        (
            "!!python/object/apply:subprocess.call [[sh, -c, {cmd}]]",
            "python/object/apply:subprocess.call",
        ),
        ("!!python/name:os.system", "python/name:os.system"),
        ("!!python/tuple [a, b]", "python/tuple"),
    ],
)
def test_python_tags_never_run(tmp_path: Path, tagged: str, tag: str) -> None:
    marker = tmp_path / "ran"
    text = f"name: demo\ngoal: {tagged.format(cmd=repr(f'touch {marker}'))}\n"
    assert problems(text) == [
        f"loop.yaml:2:7: goal: unsupported YAML tag 'tag:yaml.org,2002:{tag}' (only plain data)"
    ]
    assert not marker.exists()


def test_custom_tag_is_refused() -> None:
    assert problems("name: demo\ngoal: !env GOAL\n") == [
        "loop.yaml:2:7: goal: unsupported YAML tag '!env' (only plain data)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "loop.yaml:1:1: spec is empty", id="empty"),
        pytest.param("# only a comment\n", "loop.yaml:1:1: spec is empty", id="comment-only"),
        pytest.param("- a\n- b\n", "loop.yaml:1:1: a LoopSpec must be a YAML mapping", id="list"),
        pytest.param("hello\n", "loop.yaml:1:1: a LoopSpec must be a YAML mapping", id="scalar"),
        pytest.param(
            "name: a\ngoal: b\n---\nname: c\n",
            "loop.yaml:4:1: expected one YAML document, found several",
            id="two-documents",
        ),
    ],
)
def test_spec_must_be_one_mapping(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_alias_expansion_is_bounded() -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    (line,) = problems("\n".join(lines) + "\n")
    assert line.startswith("loop.yaml:1:")
    assert line.endswith(
        ": document expands to more than 100,000 values (through aliases or sheer size); "
        "refusing it"
    )


def test_nesting_depth_is_bounded() -> None:
    text = "name: demo\nmetadata: " + "[" * 70 + "]" * 70 + "\n"
    (line,) = problems(text)
    assert line == "loop.yaml:2:75: nesting deeper than 64 levels; refusing it"


def test_spec_size_is_bounded() -> None:
    text = "name: demo\ngoal: Summarise\n" + "# padding\n" * 100_000
    assert problems(text) == ["loop.yaml:1:1: spec is larger than 1 MB; refusing it"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_bytes(b"name: demo\ngoal: caf\xe9\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.lines() == [f"{path}:2:1: not UTF-8 text"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.lines() == [f"{path}:1:1: no such file"]


# --- types, fields ------------------------------------------------------------------------


def test_wrong_types() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents:
          - name: writer
            temperature: hot
            tools: read_file
        steps:
          - name: draft
            depends_on: research
            timeout_seconds: -5
        policy:
          max_turns: ten
          retry: 3
        """
    ) == [
        "loop.yaml:5:18: agents[0].temperature: must be a valid number, got 'hot'",
        "loop.yaml:6:12: agents[0].tools: must be a valid list, got 'read_file'",
        "loop.yaml:9:17: steps[0].depends_on: must be a valid list, got 'research'",
        "loop.yaml:10:22: steps[0].timeout_seconds: must be greater than 0, got -5",
        "loop.yaml:12:14: policy.max_turns: must be a valid integer, got 'ten'",
        "loop.yaml:13:10: policy.retry: must be a mapping, got 3",
    ]


def test_unknown_pattern_with_did_you_mean() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        pattern: sequental
        agents: [{name: writer}]
        steps: [{name: draft}]
        """
    ) == [
        "loop.yaml:3:10: pattern: must be 'sequential', 'supervisor_worker', 'parallel_fan_out', "
        "'handoff', 'evaluator_optimizer' or 'custom', got 'sequental' "
        "(did you mean 'sequential'?)"
    ]


def test_unknown_fields_with_did_you_mean_at_every_level() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        pattern: custom
        agents:
          - name: writer
            instruction: Write well.
        steps:
          - name: draft
            promt: Summarise {{goal}}
            gate: {kind: json_schema, shema: {type: object}}
        graph:
          entry: draft
          edges:
            - {form: draft, to: END}
        policy:
          retry: {attemps: 3}
        polcy: {}
        """
    ) == [
        "loop.yaml:6:5: agents[0].instruction: unknown field (did you mean 'instructions'?)",
        "loop.yaml:9:5: steps[0].promt: unknown field (did you mean 'prompt'?)",
        "loop.yaml:10:31: steps[0].gate.shema: unknown field (did you mean 'schema'?)",
        "loop.yaml:14:7: graph.edges[0].from: required field is missing",
        "loop.yaml:14:8: graph.edges[0].form: unknown field (did you mean 'from'?)",
        "loop.yaml:16:11: policy.retry.attemps: unknown field (did you mean 'attempts'?)",
        "loop.yaml:17:1: polcy: unknown field (did you mean 'policy'?)",
    ]


def test_unknown_field_without_a_close_match() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer, colour: blue}]
        steps: [{name: draft}]
        """
    ) == ["loop.yaml:3:25: agents[0].colour: unknown field"]


def test_missing_required_fields() -> None:
    assert problems("description: nothing else\n") == [
        "loop.yaml:1:1: agents: required field is missing",
        "loop.yaml:1:1: goal: required field is missing",
        "loop.yaml:1:1: name: required field is missing",
        "loop.yaml:1:1: steps: required field is missing",
    ]


def test_missing_nested_required_fields() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        tools:
          - name: search
        agents:
          - description: no name
        steps: [{name: draft}]
        """
    ) == [
        "loop.yaml:4:5: tools[0].kind: required field is missing",
        "loop.yaml:6:5: agents[0].name: required field is missing",
    ]


# --- names --------------------------------------------------------------------------------


def test_duplicate_agent_step_and_tool_names() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        tools:
          - {name: read_file, kind: builtin}
          - {name: read_file, kind: builtin}
        agents:
          - name: writer
          - name: writer
        steps:
          - {name: draft, agent: writer}
          - {name: draft, agent: writer}
        """
    ) == [
        "loop.yaml:5:12: tools[1].name: duplicate tool name 'read_file' "
        "(first defined at tools[0])",
        "loop.yaml:8:11: agents[1].name: duplicate agent name 'writer' "
        "(first defined at agents[0])",
        "loop.yaml:11:12: steps[1].name: duplicate step name 'draft' (first defined at steps[0])",
    ]


def test_invalid_names() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: my writer}]
        steps: [{name: draft/1}]
        """
    ) == [
        "loop.yaml:3:17: agents[0].name: invalid name 'my writer': "
        "use letters, digits, '_' and '-' only",
        "loop.yaml:4:16: steps[0].name: invalid name 'draft/1': "
        "use letters, digits, '_' and '-' only",
    ]


def test_double_underscore_names_are_reserved_for_generated_nodes() -> None:
    """A gated step `a` adds the node `a__passed`: a step of that name would collide."""
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: boss__}]
        steps:
          - {name: a, gate: {kind: regex, pattern: x}}
          - {name: a__passed, depends_on: [a]}
        """
    ) == [
        "loop.yaml:3:17: agents[0].name: invalid name 'boss__': "
        "'__' is reserved for the nodes loopengt adds",
        "loop.yaml:6:12: steps[1].name: invalid name 'a__passed': "
        "'__' is reserved for the nodes loopengt adds",
    ]


# --- references ---------------------------------------------------------------------------


def test_step_names_unknown_agent() -> None:
    """The example from the specification, at its exact position."""
    assert problems(
        """\
        name: demo
        goal: Write a short report
        agents:
          - name: writer
          - name: reviewer
        steps:
          - name: draft
            agent: writer
          - name: outline
            agent: writer
          - name: review
            agent: writer
          - name: check
            agent: reviwer
        """
    ) == ["loop.yaml:14:12: steps[3].agent: unknown agent 'reviwer' (did you mean 'reviewer'?)"]


def test_step_without_agent_when_there_are_several() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}, {name: editor}]
        steps:
          - name: draft
        """
    ) == ["loop.yaml:5:5: steps[0]: missing 'agent' (required when there are several agents)"]


def test_agent_names_unknown_tool() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        tools:
          - {name: search, kind: function, function: "tools:search"}
        agents:
          - name: writer
            tools: [search, serch, browse]
        steps: [{name: draft}]
        """
    ) == [
        "loop.yaml:7:21: agents[0].tools[1]: unknown tool 'serch' (did you mean 'search'?)",
        "loop.yaml:7:28: agents[0].tools[2]: unknown tool 'browse'",
    ]


def test_depends_on_names_unknown_step() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: research
          - name: draft
            depends_on: [reserch]
        """
    ) == [
        "loop.yaml:7:18: steps[1].depends_on[0]: unknown step 'reserch' (did you mean 'research'?)"
    ]


def test_seed_dependency_names_unknown_step() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: research
          - name: draft
            dependencies: [{step_name: reserch}]
        """
    ) == [
        "loop.yaml:7:32: steps[1].dependencies[0].step_name: unknown step 'reserch' "
        "(did you mean 'research'?)"
    ]


def test_supervisor_block_names_unknown_agents() -> None:
    assert problems(
        """\
        name: demo
        goal: Research
        pattern: supervisor_worker
        agents: [{name: lead}, {name: researcher}]
        supervisor:
          agent: leader
          workers: [researcher, resercher, writer]
          max_turns: 5
        steps: []
        """
    ) == [
        "loop.yaml:6:10: supervisor.agent: unknown agent 'leader' (did you mean 'lead'?)",
        "loop.yaml:7:25: supervisor.workers[1]: unknown agent 'resercher' "
        "(did you mean 'researcher'?)",
        "loop.yaml:7:36: supervisor.workers[2]: unknown agent 'writer'",
    ]


def test_evaluator_block_names_unknown_steps() -> None:
    assert problems(
        """\
        name: demo
        goal: Write a haiku
        pattern: evaluator_optimizer
        agents: [{name: poet}]
        steps: [{name: write}, {name: critique, depends_on: [write]}]
        evaluator:
          generator: writer
          evaluator: critic
          max_iterations: 3
        """
    ) == [
        "loop.yaml:7:14: evaluator.generator: unknown step 'writer' (did you mean 'write'?)",
        "loop.yaml:8:14: evaluator.evaluator: unknown step 'critic' (did you mean 'critique'?)",
    ]


def test_fan_out_block_names_unknown_steps_and_inputs() -> None:
    assert problems(
        """\
        name: demo
        goal: Compare vendors
        pattern: parallel_fan_out
        inputs:
          vendors: {description: names}
        agents: [{name: analyst}]
        steps:
          - name: assess
          - name: report
            depends_on: [assess]
        fan_out:
          branches: [assess, prices]
          map_step: asses
          map_over: input.vendor
          aggregator: reporter
        """
    ) == [
        "loop.yaml:12:22: fan_out.branches[1]: unknown step 'prices'",
        "loop.yaml:13:13: fan_out.map_step: unknown step 'asses' (did you mean 'assess'?)",
        "loop.yaml:14:13: fan_out.map_over: unknown input 'vendor' "
        "(did you mean 'vendors'?); declare it",
        "loop.yaml:15:15: fan_out.aggregator: unknown step 'reporter' (did you mean 'report'?)",
    ]


def test_handoff_block_and_handoff_targets_name_unknown_agents() -> None:
    assert problems(
        """\
        name: demo
        goal: Answer a ticket
        pattern: handoff
        agents:
          - name: triage
            handoffs: [billing, refunds, triage]
          - name: billing
            handoffs: [triag]
        handoff:
          entry: front-desk
          max_handoffs: 4
        steps: []
        """
    ) == [
        "loop.yaml:6:25: agents[0].handoffs[1]: unknown agent 'refunds'",
        "loop.yaml:6:34: agents[0].handoffs[2]: an agent cannot hand off to itself",
        "loop.yaml:8:16: agents[1].handoffs[0]: unknown agent 'triag' (did you mean 'triage'?)",
        "loop.yaml:10:10: handoff.entry: unknown agent 'front-desk'",
    ]


def test_custom_graph_edges_name_unknown_steps() -> None:
    assert problems(
        """\
        name: demo
        goal: Plan and act
        pattern: custom
        agents: [{name: worker}]
        steps: [{name: plan}, {name: act}]
        graph:
          entry: pln
          edges:
            - {from: plan, to: actt}
            - from: act
              branches:
                - when: {output_contains: DONE, step: plann}
                  to: END
                - when: {counter: visits.ack, op: "<", value: 3}
                  to: plan
              default: ENDD
            - {from: review, to: END}
        policy:
          max_turns: 10
        """
    ) == [
        "loop.yaml:7:10: graph.entry: unknown step 'pln' (did you mean 'plan'?)",
        "loop.yaml:9:24: graph.edges[0].to: unknown step 'actt' (did you mean 'act'?)",
        "loop.yaml:12:47: graph.edges[1].branches[0].when.step: unknown step 'plann' "
        "(did you mean 'plan'?)",
        "loop.yaml:14:27: graph.edges[1].branches[1].when.counter: unknown step 'ack' "
        "(did you mean 'act'?)",
        "loop.yaml:16:16: graph.edges[1].default: unknown step 'ENDD'",
        "loop.yaml:17:14: graph.edges[2].from: unknown step 'review'",
    ]


def test_policy_names_unknown_steps() -> None:
    assert problems(
        """\
        name: demo
        goal: Publish a post
        agents: [{name: writer}]
        steps:
          - name: draft
          - name: publish
            depends_on: [draft]
        policy:
          gates:
            - {step: drafts, kind: regex, pattern: "^# "}
          approvals: [publsh, {step: deploy}]
          stop_conditions:
            - {step: review, contains: DONE}
        """
    ) == [
        "loop.yaml:10:14: policy.gates[0].step: unknown step 'drafts' (did you mean 'draft'?)",
        "loop.yaml:11:15: policy.approvals[0]: unknown step 'publsh' (did you mean 'publish'?)",
        "loop.yaml:11:30: policy.approvals[1].step: unknown step 'deploy'",
        "loop.yaml:13:14: policy.stop_conditions[0].step: unknown step 'review'",
    ]


def test_pattern_block_under_another_pattern() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps: [{name: draft}]
        handoff: {entry: writer}
        """
    ) == ["loop.yaml:5:10: handoff: 'handoff' only applies to pattern 'handoff'"]


# --- pattern shapes the compilers cannot build ----------------------------------------------
# Each of these once passed validation and failed in compile_spec (or compiled into a run
# that never ended, or silently ignored a field): validation reports them, with a position.


def test_supervisor_cannot_also_be_a_worker() -> None:
    assert problems(
        """\
        name: demo
        goal: Research
        pattern: supervisor_worker
        agents: [{name: lead}, {name: researcher}]
        supervisor: {agent: lead, workers: [researcher, lead], max_turns: 5}
        steps: []
        """
    ) == [
        "loop.yaml:5:49: supervisor.workers[1]: 'lead' is the supervisor; "
        "it cannot also be a worker"
    ]


def test_supervisor_needs_a_worker() -> None:
    assert problems(
        """\
        name: demo
        goal: Research
        pattern: supervisor_worker
        agents: [{name: lead}]
        supervisor: {agent: lead, max_turns: 5}
        steps: []
        """
    ) == [
        "loop.yaml:5:13: supervisor: supervisor_worker needs at least one worker agent "
        "besides the supervisor"
    ]


EVALUATOR = """\
name: demo
goal: Write a haiku
pattern: evaluator_optimizer
agents: [{name: poet}]
policy: {max_turns: 6}
"""


def test_evaluator_cannot_judge_itself() -> None:
    assert problems(
        EVALUATOR
        + "steps: [{name: write}, {name: critique, depends_on: [write]}]\n"
        + "evaluator: {generator: write, evaluator: write}\n"
    ) == [
        "loop.yaml:7:42: evaluator.evaluator: step 'write' is also the generator; "
        "the evaluator judges another step"
    ]


def test_generator_must_run_before_the_evaluator() -> None:
    """Also through another step: write -> outline -> critique."""
    steps = """\
steps:
  - {name: critique}
  - {name: outline, depends_on: [critique]}
  - {name: write, depends_on: [outline]}
evaluator: {generator: write, evaluator: critique}
"""
    assert problems(EVALUATOR + steps) == [
        "loop.yaml:10:24: evaluator.generator: generator 'write' depends on evaluator "
        "'critique'; it must run before the evaluator"
    ]


@pytest.mark.parametrize(
    ("dependency", "expected"),
    [
        ("depends_on: [critique]", "loop.yaml:6:35: steps[0].depends_on"),
        ("dependencies: [{step_name: critique}]", "loop.yaml:6:37: steps[0].dependencies"),
    ],
)
def test_derived_generator_must_run_before_the_derived_evaluator(
    dependency: str, expected: str
) -> None:
    """Without an evaluator block the last step judges the one before it."""
    steps = f"steps: [{{name: write, {dependency}}}, {{name: critique}}]\n"
    assert problems(EVALUATOR + steps) == [
        f"{expected}: generator 'write' depends on evaluator 'critique'; it must run before "
        "the evaluator (without an 'evaluator' block, the last step judges the step before it)"
    ]


def test_evaluator_needs_two_steps_or_a_block() -> None:
    assert problems(EVALUATOR + "steps: [{name: write}]\n") == [
        "loop.yaml:3:10: pattern: evaluator_optimizer needs two steps (generator, evaluator) "
        "or an 'evaluator' block"
    ]


FAN_OUT = """\
name: demo
goal: Compare vendors
pattern: parallel_fan_out
inputs: {pages: {description: the pages}, urls: {description: more pages}}
agents: [{name: analyst}]
"""


@pytest.mark.parametrize(
    ("steps", "block", "position"),
    [
        pytest.param(
            "[{name: outline}, {name: each}]",
            "{map_step: each, map_over: input.pages, aggregator: each}",
            "7:62",
            id="declared-map-step",
        ),
        pytest.param(
            "[{name: outline}, {name: each, map_over: input.pages}]",
            "{aggregator: each}",
            "7:23",
            id="step-with-map-over",
        ),
    ],
)
def test_fan_out_aggregator_cannot_be_the_map_step(steps: str, block: str, position: str) -> None:
    assert problems(FAN_OUT + f"steps: {steps}\nfan_out: {block}\n") == [
        f"loop.yaml:{position}: fan_out.aggregator: step 'each' is the map step; "
        "it cannot be its own aggregator"
    ]


def test_fan_out_aggregator_cannot_be_a_listed_branch() -> None:
    assert problems(
        FAN_OUT
        + "steps: [{name: prices}, {name: reviews}, {name: report}]\n"
        + "fan_out: {branches: [prices, reviews, report], aggregator: report}\n"
    ) == [
        "loop.yaml:7:39: fan_out.branches[2]: step 'report' is the aggregator; "
        "it cannot also be a branch"
    ]


def test_fan_out_branches_cannot_wait_for_the_aggregator() -> None:
    """The aggregator waits for every branch and the map step: a run would never end."""
    steps = """\
steps:
  - {name: prices}
  - {name: reviews, depends_on: [notes]}
  - {name: notes, depends_on: [report]}
  - {name: each, dependencies: [{step_name: report}]}
  - {name: report}
fan_out:
  branches: [prices, reviews]
  map_step: each
  map_over: input.pages
  aggregator: report
"""
    assert problems(FAN_OUT + steps) == [
        "loop.yaml:8:33: steps[1].depends_on: branch 'reviews' depends on the aggregator "
        "'report', which waits for every branch: neither could run",
        "loop.yaml:10:32: steps[3].dependencies: map step 'each' depends on the aggregator "
        "'report', which waits for every branch: neither could run",
    ]


def test_fan_out_needs_branches_or_a_map_step() -> None:
    assert problems(FAN_OUT + "steps: [{name: report}]\nfan_out: {aggregator: report}\n") == [
        "loop.yaml:7:10: fan_out: parallel_fan_out needs branch steps or a map_step"
    ]


def test_only_one_step_maps_over_a_list() -> None:
    steps = """\
steps:
  - {name: summarise, map_over: input.pages}
  - {name: tag, map_over: input.pages}
  - {name: report, depends_on: [summarise, tag]}
"""
    assert problems(FAN_OUT + steps) == [
        "loop.yaml:8:27: steps[1].map_over: only one step maps over a list, and it is "
        "'summarise' (steps[0].map_over)"
    ]


def test_the_map_step_of_the_fan_out_block_is_the_only_one() -> None:
    steps = """\
steps:
  - {name: summarise, map_over: input.urls}
  - {name: tag, map_over: input.pages}
  - {name: report, depends_on: [summarise, tag]}
fan_out: {map_step: summarise, map_over: input.pages}
"""
    assert problems(FAN_OUT + steps) == [
        "loop.yaml:7:33: steps[0].map_over: differs from fan_out.map_over 'input.pages'",
        "loop.yaml:8:27: steps[1].map_over: only one step maps over a list, and it is "
        "'summarise' (fan_out.map_step)",
    ]


def test_map_over_outside_the_fan_out_pattern() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise every page
        inputs: {pages: {description: the pages}}
        agents: [{name: writer}]
        steps: [{name: summarise, map_over: input.pages}]
        """
    ) == ["loop.yaml:5:37: steps[0].map_over: map_over only applies to pattern 'parallel_fan_out'"]


def test_custom_graph_step_has_one_conditional_edge() -> None:
    """LangGraph takes one router per node; its branches are tried in order."""
    assert problems(
        """\
        name: demo
        goal: Draft until approved
        pattern: custom
        agents: [{name: writer}]
        steps: [{name: draft}, {name: review}]
        graph:
          entry: draft
          edges:
            - {from: draft, to: review}
            - {from: review, branches: [{when: {output_contains: OK}, to: END}]}
            - {from: review, branches: [{when: {counter: turns, value: 5}, to: draft}]}
        policy: {max_turns: 10}
        """
    ) == [
        "loop.yaml:11:14: graph.edges[2].from: step 'review' already has a conditional edge "
        "(graph.edges[1]); put all its branches in that edge"
    ]


def test_custom_pattern_needs_a_graph() -> None:
    assert problems(
        """\
        name: demo
        goal: Plan and act
        pattern: custom
        agents: [{name: worker}]
        steps: [{name: plan}]
        """
    ) == ["loop.yaml:3:10: pattern: pattern 'custom' needs a 'graph' block (entry and edges)"]


def test_problems_with_derived_parts_wait_for_the_rest() -> None:
    """They need the validated model, so other problems are reported first."""
    text = EVALUATOR + "steps: [{name: write}, {name: critique}]\n"
    text += "evaluator: {generator: write, evaluator: write, max_iterations: 0}\n"
    assert problems(text) == [
        "loop.yaml:7:65: evaluator.max_iterations: must be greater than or equal to 1, got 0"
    ]


# --- specs made in Python -------------------------------------------------------------------


def test_check_spec_runs_the_load_checks_on_a_spec_made_in_python() -> None:
    spec = valid(EVALUATOR + "steps: [{name: write}, {name: critique, depends_on: [write]}]\n")
    assert check_spec(spec) is spec
    swapped = spec.model_copy(update={"steps": list(reversed(spec.steps))})
    with pytest.raises(SpecError) as info:
        check_spec(swapped)
    assert info.value.lines() == [
        "<spec>:1:1: steps[0].depends_on: generator 'critique' depends on evaluator 'write'; "
        "it must run before the evaluator (without an 'evaluator' block, the last step judges "
        "the step before it)"
    ]
    bard = spec.agents[0].model_copy(update={"name": "bard"})
    steps = [spec.steps[0].model_copy(update={"agent": "poet"}), spec.steps[1]]
    renamed = spec.model_copy(update={"agents": [bard], "steps": steps})
    with pytest.raises(SpecError) as info:
        check_spec(renamed, filename="made.yaml")
    assert info.value.lines() == ["made.yaml:1:1: steps[0].agent: unknown agent 'poet'"]
    with pytest.raises(SpecError) as info:
        check_spec(spec.model_copy(update={"pattern": "handof"}))
    assert info.value.lines()[-1].startswith("<spec>:1:1: pattern: must be 'sequential', ")


# --- cycles -------------------------------------------------------------------------------


def test_two_step_cycle() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: draft
            depends_on: [review]
          - name: review
            depends_on: [draft]
        """
    ) == ["loop.yaml:6:17: steps[0].depends_on: dependency cycle: review -> draft -> review"]


def test_three_step_cycle_is_named_in_execution_order() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: outline
            depends_on: [polish]
          - name: draft
            depends_on: [outline]
          - name: polish
            depends_on: [draft]
        """
    ) == [
        "loop.yaml:6:17: steps[0].depends_on: dependency cycle: draft -> polish -> outline -> draft"
    ]


def test_cycle_in_seed_dependencies_points_at_dependencies() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: draft
            dependencies: [{step_name: review}]
          - name: review
            dependencies: [{step_name: draft}]
        """
    ) == ["loop.yaml:6:19: steps[0].dependencies: dependency cycle: review -> draft -> review"]


def test_cycle_is_reported_on_the_right_step_after_a_duplicate() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: intro
          - name: intro
          - name: draft
            depends_on: [review]
          - name: review
            depends_on: [draft]
        """
    ) == [
        "loop.yaml:6:11: steps[1].name: duplicate step name 'intro' (first defined at steps[0])",
        "loop.yaml:8:17: steps[2].depends_on: dependency cycle: review -> draft -> review",
    ]


def test_self_dependency() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: draft
            depends_on: [draft]
        """
    ) == ["loop.yaml:6:18: steps[0].depends_on[0]: step 'draft' depends on itself"]


# --- prompt placeholders ------------------------------------------------------------------


def test_placeholder_names_unknown_step() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: draft
          - name: polish
            depends_on: [draft]
            prompt: "Polish {{steps.drft}} and {{draf}}"
        """
    ) == [
        "loop.yaml:8:13: steps[1].prompt: {{steps.drft}} names unknown step 'drft' "
        "(did you mean 'draft'?)",
        "loop.yaml:8:13: steps[1].prompt: unknown placeholder {{draf}} (did you mean 'draft'?)",
    ]


def test_placeholder_names_undeclared_input() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        inputs:
          document: {description: the text}
        agents:
          - name: writer
            instructions: "You write for {{input.audience}}."
        steps:
          - name: draft
            prompt: "Summarise {{input.documnt}} for {{input.document}}"
        """
    ) == [
        "loop.yaml:7:19: agents[0].instructions: {{input.audience}} names unknown input "
        "'audience'; declare it",
        "loop.yaml:10:13: steps[0].prompt: {{input.documnt}} names unknown input 'documnt' "
        "(did you mean 'document'?); declare it",
    ]


def test_placeholder_names_step_that_does_not_run_before() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: draft
            prompt: "Start from {{steps.outline}}"
          - name: outline
          - name: polish
            depends_on: [outline]
            prompt: "Polish {{draft}}"
        """
    ) == [
        "loop.yaml:6:13: steps[0].prompt: {{steps.outline}}: step 'outline' does not run "
        "before 'draft'; add it to depends_on",
        "loop.yaml:10:13: steps[2].prompt: {{draft}}: step 'draft' does not run before "
        "'polish'; add it to depends_on",
    ]


def test_pattern_variable_outside_its_pattern() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: draft
            prompt: "{{feedback}} {{item}} {{task}}"
        """
    ) == [
        "loop.yaml:6:13: steps[0].prompt: {{feedback}} is only set in the evaluator_optimizer "
        "and custom patterns",
        "loop.yaml:6:13: steps[0].prompt: {{item}} is only set in the parallel_fan_out pattern",
        "loop.yaml:6:13: steps[0].prompt: {{task}} is only set in the supervisor_worker "
        "and handoff patterns",
    ]


def test_placeholders_that_resolve_are_accepted() -> None:
    spec = valid(
        """\
        name: demo
        goal: Summarise
        inputs:
          document: {description: the text}
        agents:
          - name: writer
            instructions: "Goal: {{ goal }}"
        steps:
          - name: outline
            prompt: "Outline {{input.document}} for {{goal}}"
          - name: draft
            depends_on: [outline]
            prompt: "Expand {{steps.outline}} and {{outline.sections.0}}"
          - name: polish
            dependencies: [{step_name: draft}]
            prompt: "Polish {{draft}}; keep {{steps.outline}}"
        """
    )
    assert [s.requires for s in spec.steps] == [[], ["outline"], ["draft"]]


# --- loops need a limit -------------------------------------------------------------------

CYCLIC_SPECS = {
    "supervisor_worker": """\
        name: demo
        goal: Research
        pattern: supervisor_worker
        agents: [{name: supervisor}, {name: researcher}]
        steps: []
        """,
    "handoff": """\
        name: demo
        goal: Answer a ticket
        pattern: handoff
        agents: [{name: triage, handoffs: [billing]}, {name: billing}]
        steps: []
        """,
    "evaluator_optimizer": """\
        name: demo
        goal: Write a haiku
        pattern: evaluator_optimizer
        agents: [{name: poet}]
        steps: [{name: write}, {name: critique, depends_on: [write]}]
        """,
    "custom": """\
        name: demo
        goal: Plan and act
        pattern: custom
        agents: [{name: worker}]
        steps: [{name: plan}, {name: act}]
        graph:
          entry: plan
          edges: [{from: plan, to: act}, {from: act, to: plan}]
        """,
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (
            "supervisor_worker",
            "loop.yaml:1:1: policy: pattern 'supervisor_worker' loops but has no limit: "
            "set policy.max_turns, supervisor.max_turns or a policy.stop_conditions entry",
        ),
        (
            "handoff",
            "loop.yaml:1:1: policy: pattern 'handoff' loops but has no limit: "
            "set policy.max_turns, handoff.max_handoffs or a policy.stop_conditions entry",
        ),
        (
            "evaluator_optimizer",
            "loop.yaml:1:1: policy: pattern 'evaluator_optimizer' loops but has no limit: "
            "set policy.max_turns, evaluator.max_iterations or a policy.stop_conditions entry",
        ),
        (
            "custom",
            "loop.yaml:1:1: policy: pattern 'custom' loops but has no limit: "
            "set policy.max_turns or a policy.stop_conditions entry",
        ),
    ],
)
def test_cyclic_pattern_without_a_limit(pattern: str, expected: str) -> None:
    assert problems(CYCLIC_SPECS[pattern]) == [expected]


@pytest.mark.parametrize("pattern", sorted(CYCLIC_SPECS))
@pytest.mark.parametrize(
    "limit",
    ["policy: {max_turns: 8}", "policy: {stop_conditions: [{contains: DONE}]}"],
)
def test_cyclic_pattern_with_a_limit(pattern: str, limit: str) -> None:
    assert valid(CYCLIC_SPECS[pattern] + limit + "\n").pattern == pattern


@pytest.mark.parametrize(
    ("pattern", "block"),
    [
        ("supervisor_worker", "supervisor: {agent: supervisor, max_turns: 5}"),
        ("handoff", "handoff: {entry: triage, max_handoffs: 3}"),
        (
            "evaluator_optimizer",
            "evaluator: {generator: write, evaluator: critique, max_iterations: 3}",
        ),
    ],
)
def test_cyclic_pattern_with_its_own_limit(pattern: str, block: str) -> None:
    assert valid(CYCLIC_SPECS[pattern] + block + "\n").pattern == pattern


def test_custom_graph_without_a_cycle_needs_no_limit() -> None:
    spec = valid(
        """\
        name: demo
        goal: Plan and act
        pattern: custom
        agents: [{name: worker}]
        steps: [{name: plan}, {name: act}]
        graph:
          entry: plan
          edges: [{from: plan, to: act}, {from: act, to: END}]
        """
    )
    assert spec.graph is not None and spec.graph.entry == "plan"


# --- models, regexes, JSON Schema ---------------------------------------------------------


def test_bad_model_strings() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        defaults:
          model: gpt-4o
        agents:
          - {name: writer, model: "opnai:gpt-4o-mini"}
          - {name: editor, model: "openai:"}
          - {name: local-one, model: local}
        steps:
          - {name: draft, agent: writer, model: claude}
        """
    ) == [
        "loop.yaml:4:10: defaults.model: model 'gpt-4o' must be 'provider:model', "
        "e.g. 'openai:gpt-4o-mini'",
        "loop.yaml:6:27: agents[0].model: unknown model provider 'opnai' "
        "(did you mean 'openai'?); use one of openai, anthropic, ollama, local, test",
        "loop.yaml:7:27: agents[1].model: model 'openai:' must be 'provider:model', "
        "e.g. 'openai:gpt-4o-mini'",
        "loop.yaml:10:41: steps[0].model: model 'claude' must be 'provider:model', "
        "e.g. 'openai:gpt-4o-mini'",
    ]


def test_invalid_regex_in_gates_and_stop_conditions() -> None:
    assert problems(
        """\
        name: demo
        goal: Summarise
        agents: [{name: writer}]
        steps:
          - name: draft
            gate: {kind: regex, pattern: "^Summary: ([A-Z"}
        policy:
          gates:
            - {step: draft, kind: regex, pattern: "(unclosed"}
          stop_conditions:
            - matches: "*DONE"
        """
    ) == [
        "loop.yaml:6:34: steps[0].gate.pattern: invalid regular expression: "
        "unterminated character set at position 11",
        "loop.yaml:9:43: policy.gates[0].pattern: invalid regular expression: "
        "missing ), unterminated subpattern at position 0",
        "loop.yaml:11:16: policy.stop_conditions[0].matches: invalid regular expression: "
        "nothing to repeat at position 0",
    ]


def test_invalid_json_schema() -> None:
    assert problems(
        """\
        name: demo
        goal: Score a document
        agents: [{name: writer}]
        steps:
          - name: score
            output_schema:
              type: object
              properties:
                score: {type: number, minimum: low}
          - name: check
            gate: {kind: json_schema, schema: {type: objekt}}
        """
    ) == [
        "loop.yaml:7:7: steps[0].output_schema: invalid JSON Schema at "
        "['properties']['score']['minimum']: 'low' is not of type 'number'",
        "loop.yaml:11:39: steps[1].gate.schema: invalid JSON Schema at ['type']: "
        "'objekt' is not valid under any of the given schemas",
    ]


# --- every problem at once ----------------------------------------------------------------


def test_every_problem_is_reported_at_once_sorted_by_position() -> None:
    with pytest.raises(SpecError) as info:
        load_spec_text(
            yaml(
                """\
                name: demo
                goal: Summarise
                pattern: sequential
                agents:
                  - name: writer
                    model: gpt-4o
                    tools: [search]
                    temprature: 0.2
                steps:
                  - name: draft
                    agent: writter
                    prompt: "Use {{steps.outline}}"
                  - name: review
                    agent: writer
                    depends_on: [review, draft]
                policy:
                  max_turns: 0
                """
            ),
            filename="loop.yaml",
        )
    error = info.value
    assert error.lines() == [
        "loop.yaml:6:12: agents[0].model: model 'gpt-4o' must be 'provider:model', "
        "e.g. 'openai:gpt-4o-mini'",
        "loop.yaml:7:13: agents[0].tools[0]: unknown tool 'search'",
        "loop.yaml:8:5: agents[0].temprature: unknown field (did you mean 'temperature'?)",
        "loop.yaml:11:12: steps[0].agent: unknown agent 'writter' (did you mean 'writer'?)",
        "loop.yaml:12:13: steps[0].prompt: {{steps.outline}} names unknown step 'outline'",
        "loop.yaml:15:18: steps[1].depends_on[0]: step 'review' depends on itself",
        "loop.yaml:17:14: policy.max_turns: must be greater than or equal to 1, got 0",
    ]
    assert error.problems[3] == Problem(
        ("steps", 0, "agent"), "unknown agent 'writter' (did you mean 'writer'?)", 11, 12
    )
    assert str(error) == "\n".join(error.lines())


# --- valid specs --------------------------------------------------------------------------


def test_seed_spec_loads() -> None:
    spec = load_spec(SEED_FIXTURE)
    assert spec.version == "0.1.0"
    assert spec.pattern == "sequential"
    assert [a.capabilities for a in spec.agents] == [
        ["search", "summarise"],
        ["writing"],
        ["editing", "fact-checking"],
    ]
    assert {s.name: s.requires for s in spec.steps} == {
        "research": [],
        "draft": ["research"],
        "edit": ["research", "draft"],
    }
    assert (spec.policy.max_turns, spec.policy.max_total_time_seconds) == (12, 600)


def _shipped_specs() -> list[Path]:
    found = sorted((ROOT / "examples").glob("*.yaml"))
    found += sorted((ROOT / "templates").glob("**/*.yaml"))
    return [SEED_FIXTURE, *found]


@pytest.mark.parametrize("path", _shipped_specs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_specs_validate_and_compile(path: Path) -> None:
    """Every example and template validates, and a spec that validates compiles."""
    from loopengt import compile_spec

    spec = load_spec(path)
    assert isinstance(spec, LoopSpec)
    assert check_spec(spec) is spec  # the same checks on the model find nothing either
    assert compile_spec(spec, check_models=False).get_graph().nodes
