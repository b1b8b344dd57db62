"""Chat models for tests: run a spec deterministically, with no key, no server and no weights.

Users' CI, templates and evals need a model that always answers the same way and answers
every kind of call a spec makes: plain text, structured output (supervisor routing,
evaluator verdicts, judge gates, `output_schema` steps), tool calls and handoffs. Two
models cover that, after pydantic-ai's ``TestModel`` and the openai-agents scripted fake:

- ``TestModel`` needs no script: it derives a short reply from the request, generates JSON
  valid against the requested schema, and calls the tools it is offered once.
- ``ScriptedModel`` answers from a list, in order, and records every request, for tests
  that need exact replies (a verdict that fails once, a particular route, an error).

``test_model(name)`` builds a ``TestModel`` from the options of a ``test:...`` model
string, so a spec or the CLI can name it (``model: test``, ``--model test:delay=0.05``).

Both are real ``BaseChatModel`` subclasses with an async path that awaits its delay rather
than blocking, because many runs share one event loop (evals, the MCP server).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from loopengt.errors import UserInputError
from loopengt.providers.testing.models import ScriptedModel, ScriptExhaustedError, TestModel
from loopengt.providers.testing.schema import sample_json

__all__ = [
    "ScriptExhaustedError",
    "ScriptedModel",
    "TestModel",
    "sample_json",
    "test_model",
]

# -- model strings -------------------------------------------------------------------------------

OPTIONS = ("delay", "text", "tools", "transfers")


def test_model(name: str | None = None) -> BaseChatModel:
    """The ``TestModel`` a ``test`` model string names, for the provider registry.

    ``name`` is what follows ``test:`` (the whole ``test:...`` string is accepted too):
    empty for the defaults, else comma-separated options —
    ``delay=SECONDS``, ``tools=all|none|NAME+NAME``, ``transfers=no|yes|AGENT+AGENT``,
    ``text=REPLY``. ``text`` takes the rest of the string, commas included, so it comes
    last: ``test:delay=0.05,text=Looks good, ship it``.
    """
    rest = (name or "").strip()
    if rest == "test" or rest.startswith("test:"):
        rest = rest[len("test") :].lstrip(":")
    settings: dict[str, Any] = {}
    while rest:
        key, eq, value = rest.partition("=")
        key = key.strip()
        if key == "text" and eq:
            settings["text"] = value
            break
        value, _, rest = value.partition(",")
        value = value.strip()
        if not eq or key not in OPTIONS:
            raise UserInputError(
                f"test model option {key!r} is not one of {', '.join(OPTIONS)} "
                "(write e.g. 'test:delay=0.05' or 'test:text=hello')"
            )
        if key == "delay":
            try:
                settings["delay"] = float(value)
            except ValueError:
                raise UserInputError(f"test model delay={value!r} is not a number") from None
            if not settings["delay"] >= 0:
                raise UserInputError(f"test model delay={value!r} must be 0 or more seconds")
        elif key == "tools":
            settings["call_tools"] = value if value in ("all", "none") else _names(value)
        elif key == "transfers":
            flag = _FLAGS.get(value.lower())
            settings["transfers"] = flag if flag is not None else _names(value)
    return TestModel(**settings)


test_model.__test__ = False  # type: ignore[attr-defined]  # not a pytest test function

_FLAGS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split("+") if n.strip()]
