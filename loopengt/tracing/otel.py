"""A trace as OpenTelemetry spans with the GenAI semantic conventions: one root span for the
run (`invoke_workflow {spec}`), a child per step (`invoke_agent {agent}`), and below it a
span per model call (`chat {model}`) and tool call (`execute_tool {tool}`). Gates, retries,
interrupts and stops become span events. The spans keep the times the trace recorded.

opentelemetry-sdk is an optional extra (`pip install 'loopengt[otel]'`), imported here only.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any

from loopengt.errors import LoopengtError, UserInputError
from loopengt.status import StepStatus
from loopengt.tracing.events import MODEL_CALL, TOOL_CALL, Event, Trace
from loopengt.tracing.views import StepView, run_usage, timeline

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
MISSING = "OpenTelemetry export needs the otel extra: pip install 'loopengt[otel]'"


# a step that failed; "error" is what traces written before StepStatus called it
FAILED_STEP = (StepStatus.FAILED, StepStatus.TIMED_OUT, "error")


def require_sdk() -> None:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise UserInputError(MISSING) from None


def otlp_endpoint() -> str | None:
    """The OTLP endpoint from the standard variables (traces-specific first), if any."""
    return next((os.environ[v] for v in ENDPOINT_VARS if os.environ.get(v)), None)


def default_exporter(out: IO[str] | None = None) -> Any:
    """OTLP over HTTP when an OTLP endpoint variable is set (the exporter reads endpoint,
    headers and timeout from the standard variables), else the console exporter writing
    JSON spans to ``out`` (stdout by default)."""
    require_sdk()
    if otlp_endpoint():
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise UserInputError(MISSING) from None
        return OTLPSpanExporter()
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    # sys.stdout now, not the one ConsoleSpanExporter's default argument saw at import
    return ConsoleSpanExporter(out=out or sys.stdout)


def export(trace: Trace, exporter: Any = None, *, out: IO[str] | None = None) -> int:
    """Send the trace's spans to ``exporter`` (default: `default_exporter(out)`); returns
    how many spans were exported."""
    require_sdk()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    own = exporter is None
    if own:
        exporter = default_exporter(out)
    # the spans are made first and handed to the exporter in one batch, so a failing
    # endpoint is one clear error rather than a log line per span
    collected = InMemorySpanExporter()
    service = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "loopengt"}
    provider = TracerProvider(resource=Resource.create(service), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(collected))
    build_spans(provider.get_tracer("loopengt.tracing"), trace)
    spans = collected.get_finished_spans()
    provider.shutdown()
    try:
        result = exporter.export(spans)
    finally:
        if own:
            exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        where = f" to {otlp_endpoint()}" if own and otlp_endpoint() else ""
        raise LoopengtError(f"the OpenTelemetry exporter could not send {len(spans)} spans{where}")
    return len(spans)


def build_spans(tracer: Any, trace: Trace) -> None:
    from opentelemetry import trace as otel

    events: list[Event] = trace.get("events") or []
    if not events:
        return
    started = trace.get("started") or events[0]["ts"]
    ended = trace.get("ended") or events[-1]["ts"]
    usage = run_usage(trace)
    root = tracer.start_span(
        f"invoke_workflow {trace.get('spec') or 'loop'}",
        start_time=ns(started),
        attributes=attributes(
            {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": trace.get("spec"),
                "gen_ai.conversation.id": trace.get("run_id"),
                "gen_ai.usage.input_tokens": int(usage["input_tokens"]),
                "gen_ai.usage.output_tokens": int(usage["output_tokens"]),
                "loopengt.run_id": trace.get("run_id"),
                "loopengt.status": trace.get("status"),
                "loopengt.stop_reason": trace.get("stop_reason"),
                "loopengt.cost_usd": usage["cost_usd"],
                "loopengt.sessions": trace.get("sessions"),
            }
        ),
    )
    context = otel.set_span_in_context(root)
    for entry in timeline(trace):
        if isinstance(entry, StepView):
            step_span(tracer, context, entry, ended)
        else:
            root.add_event(str(entry.get("kind")), event_attributes(entry), ns(entry["ts"]))
    if trace.get("status") == "failed":
        fail(root, trace.get("stop_reason") or "failed")
    root.end(end_time=ns(max(ended, started)))


def step_span(tracer: Any, context: Any, step: StepView, run_end: float) -> None:
    from opentelemetry import trace as otel

    tokens_in, tokens_out = step.tokens
    name = f"invoke_agent {step.agent}" if step.agent else f"step {step.node}"
    span = tracer.start_span(
        name,
        context=context,
        start_time=ns(step.start),
        attributes=attributes(
            {
                "gen_ai.operation.name": "invoke_agent" if step.agent else None,
                "gen_ai.agent.name": step.agent,
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
                "loopengt.step": step.node,
                "loopengt.step.status": step.status,
                "loopengt.session": step.session,
            }
        ),
    )
    inner = otel.set_span_in_context(span)
    for item in step.items:
        if item["kind"] == MODEL_CALL:
            call_span(tracer, inner, item, model_attributes(item))
        elif item["kind"] == TOOL_CALL:
            call_span(tracer, inner, item, tool_attributes(item))
        else:
            span.add_event(str(item["kind"]), event_attributes(item), ns(item["ts"]))
    if step.status in FAILED_STEP:
        fail(span, step.error or step.status)
    span.end(end_time=ns(step.end if step.end is not None else run_end))


def call_span(tracer: Any, context: Any, call: Event, attrs: dict[str, Any]) -> None:
    end = call["ts"]
    start = end - (call.get("latency_s") or 0.0)
    name = attrs.pop("_name")
    span = tracer.start_span(name, context=context, start_time=ns(start), attributes=attrs)
    if call.get("error"):
        fail(span, call["error"])
    span.end(end_time=ns(end))


def model_attributes(call: Event) -> dict[str, Any]:
    model = call.get("model") or "unknown"
    messages = [
        {"role": m.get("role"), "parts": [{"type": "text", "content": m.get("content")}]}
        for m in call.get("messages") or []
    ]
    response = call.get("response")
    parts: list[dict[str, Any]] = [{"type": "text", "content": response}] if response else []
    parts += [
        {
            "type": "tool_call",
            "id": tc.get("id"),
            "name": tc.get("name"),
            "arguments": tc.get("args"),
        }
        for tc in call.get("tool_calls") or []
    ]
    output = [{"role": "assistant", "parts": parts}]
    return {
        "_name": f"chat {model}",
        **attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.response.model": call.get("response_model") or call.get("model"),
                "gen_ai.provider.name": call.get("provider"),
                "gen_ai.agent.name": call.get("agent"),
                "gen_ai.usage.input_tokens": call.get("input_tokens") or 0,
                "gen_ai.usage.output_tokens": call.get("output_tokens") or 0,
                "gen_ai.input.messages": json.dumps(messages, ensure_ascii=False),
                "gen_ai.output.messages": None if call.get("error") else json.dumps(output),
                "loopengt.cost_usd": call.get("cost_usd") or 0.0,
                "loopengt.step": call.get("step"),
            }
        ),
    }


def tool_attributes(call: Event) -> dict[str, Any]:
    name = call.get("name") or "tool"
    return {
        "_name": f"execute_tool {name}",
        **attributes(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.agent.name": call.get("agent"),
                "gen_ai.tool.call.arguments": json.dumps(call.get("args"), ensure_ascii=False),
                "gen_ai.tool.call.result": call.get("result"),
                "loopengt.step": call.get("step"),
            }
        ),
    }


def event_attributes(event: Event) -> dict[str, Any]:
    skip = {"ts", "kind", "run_id"}
    return attributes({f"loopengt.{k}": v for k, v in event.items() if k not in skip})


def attributes(values: dict[str, Any]) -> dict[str, Any]:
    """OTel attribute values are primitives: None is left out, structures become JSON."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[key] = value
        else:
            out[key] = json.dumps(value, ensure_ascii=False, default=str)
    return out


def fail(span: Any, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))
    span.set_attribute("error.type", description.split(":", 1)[0][:100])


def ns(ts: float) -> int:
    return int(ts * 1_000_000_000)
