"""Generated tokens/s of the embedded `local` model through loopengt vs llama-cpp-python.

    uv run python benchmarks/local_tokens.py [--rounds 15] [--max-tokens 128] [--quick] [--json]

Three ways to make the same completion (same messages, same max_tokens, temperature 0 and
repeat penalty, so each generates the same tokens): (a) calling llama-cpp-python directly,
``Llama.create_chat_completion`` on a Llama of its own; (b) ``ChatLocalLlama.invoke``, our
LangChain adapter; (c) a one-step spec on `local` compiled with ``compile_spec`` and
invoked, the whole loopengt path. Rounds are interleaved so drift (CPU frequency, other
load) hits all alike; medians (and best rounds) of generated tokens / wall time per call.
Target: (c)/(a) and (b)/(a) >= 0.9. llama.cpp uses every core, so any other busy process
makes single calls several times slower: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Callable

from common import Row, emit
from langchain_core.messages import HumanMessage, SystemMessage

from loopengt.compile import compile_spec
from loopengt.providers.local import ChatLocalLlama, local_chat_model
from loopengt.spec import load_spec_text

TARGET = 0.9
INSTRUCTIONS = "You are a storyteller."
PROMPT = "Tell a long story about an owl who learns to read."

SPEC = f"""
    name: local-tokens
    goal: Benchmark the local model.
    defaults: {{model: local, temperature: 0}}
    agents:
      - {{name: teller, instructions: {INSTRUCTIONS}}}
    steps:
      - {{name: story, prompt: "{PROMPT}"}}
    policy: {{max_turns: 5}}
"""

# a way of making the completion -> (generated tokens, seconds)
Runner = Callable[[], tuple[int, float]]


def direct_runner(path: str, max_tokens: int) -> Runner:
    from llama_cpp import Llama

    # the same settings ChatLocalLlama loads its shared Llama with
    llama = Llama(model_path=path, n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": PROMPT},
    ]

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        result = llama.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0,
            repeat_penalty=ChatLocalLlama.model_fields["repeat_penalty"].default,  # as ours
        )
        elapsed = time.perf_counter() - start
        return result["usage"]["completion_tokens"], elapsed  # type: ignore[index]

    return run


def adapter_runner(max_tokens: int) -> Runner:
    model = local_chat_model(temperature=0).model_copy(update={"max_tokens": max_tokens})
    messages = [SystemMessage(INSTRUCTIONS), HumanMessage(PROMPT)]

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        reply = model.invoke(messages)
        elapsed = time.perf_counter() - start
        usage = reply.usage_metadata
        return (usage["output_tokens"] if usage else 0), elapsed

    return run


def compiled_runner(max_tokens: int) -> Runner:
    # the spec says `model: local`; the injected model is what `local` resolves to, with the
    # benchmark's max_tokens
    model = local_chat_model(temperature=0).model_copy(update={"max_tokens": max_tokens})
    graph = compile_spec(load_spec_text(textwrap.dedent(SPEC)), models=model)

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        state = graph.invoke({"input": {}})
        elapsed = time.perf_counter() - start
        assert state["status"] == "completed", state.get("stop_reason")
        return int(state["usage"]["output_tokens"]), elapsed

    return run


def measure(
    runners: dict[str, Runner], rounds: int, say: Callable[..., None], warmup: int = 2
) -> dict[str, list[float]]:
    """Tokens/s of every call, the runners' order rotating from round to round."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    rates: dict[str, list[float]] = {name: [] for name in runners}
    tokens: dict[str, set[int]] = {name: set() for name in runners}
    order = list(runners)
    for i in range(rounds):
        for name in order[i % len(order) :] + order[: i % len(order)]:
            generated, seconds = runners[name]()
            rates[name].append(generated / seconds)
            tokens[name].add(generated)
    say("generated tokens per call:", {name: sorted(t) for name, t in tokens.items()})
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 2 rounds, no verdict")
    parser.add_argument("--json", action="store_true", help="print only the rows, as JSON")
    args = parser.parse_args()
    rounds, max_tokens = (2, 16) if args.quick else (args.rounds, args.max_tokens)
    path = local_chat_model().model_path
    runners = {
        "(a) llama-cpp-python directly": direct_runner(path, max_tokens),
        "(b) ChatLocalLlama.invoke": adapter_runner(max_tokens),
        "(c) compiled one-step spec": compiled_runner(max_tokens),
    }
    say = print if not args.json else lambda *a, **k: print(*a, **k, file=sys.stderr)
    say(f"model {path}, {os.cpu_count()} threads, max_tokens {max_tokens}, temperature 0")
    say(f"medians of {rounds} interleaved rounds after warm-up; target >= {TARGET}x (a)")
    rates = measure(runners, rounds, say)
    direct = rates["(a) llama-cpp-python directly"]
    base, best_base = statistics.median(direct), max(direct)
    if not args.json:
        # the best round is the one least disturbed by other processes: a steadier view
        header = f"{'median tok/s':>13}{'p25':>7}{'p75':>7}{'vs (a)':>8}{'best':>7}{'vs (a)':>8}"
        print(f"\n{'way':<32}{header}")
        for name, values in rates.items():
            median, best = statistics.median(values), max(values)
            p25, _, p75 = statistics.quantiles(values, n=4) if len(values) > 1 else [median] * 3
            print(
                f"{name:<32}{median:>13.1f}{p25:>7.1f}{p75:>7.1f}{median / base:>7.2f}x"
                f"{best:>7.1f}{best / best_base:>7.2f}x"
            )
        print(f"(load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    rows = [
        Row(
            f"local_tokens_per_s_{key}",
            "tok/s",
            base,
            statistics.median(rates[name]),
            TARGET,
            "ratio>=",
            note=note,
            judged=not args.quick,
        )
        for key, name, note in (
            ("adapter", "(b) ChatLocalLlama.invoke", "ChatLocalLlama vs llama-cpp-python"),
            ("compiled", "(c) compiled one-step spec", "compiled spec vs llama-cpp-python"),
        )
    ]
    emit(rows, args.json)


if __name__ == "__main__":
    main()
