"""Where a failed run resumes (`loopengt resume` of a `failed` run).

A failed step wrote its failure into the state, so the run reached the end of the graph; it
resumes from the checkpoint before the superstep that failed.
"""

from __future__ import annotations

from typing import Any

from loopengt.runs.session import thread_config


async def before_failure(graph: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """Where a failed run resumes: the checkpoint before the superstep that failed, with the
    work of that superstep's steps that did not fail kept (None: there is no such point).

    Why a fork: resuming *at* that checkpoint is time travel, where LangGraph runs every task
    of the superstep again, so parallel siblings of the failed step would repeat their model
    calls. Instead the checkpoint is copied as the thread's head (`as_node="__copy__"`) and
    each sibling's writes are stored on the copy as its pending writes; resuming at the head,
    LangGraph hands them back to those tasks and runs only the failed one."""
    async for snapshot in graph.aget_state_history(config):
        if snapshot.next and not snapshot.values.get("stop_reason"):
            break
    else:
        return None
    saved = await graph.checkpointer.aget_tuple(snapshot.config)
    writes: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in (saved.pending_writes if saved else None) or ():
        writes.setdefault(task_id, []).append((channel, value))
    kept = {
        (task.name, task.path): writes[task.id]
        for task in snapshot.tasks
        if task.id in writes and not _ends_run(writes[task.id])
    }
    if not kept:
        return dict(snapshot.config)
    fork = await graph.aupdate_state(snapshot.config, None, as_node="__copy__")
    head = await graph.aget_state(fork)
    for task in head.tasks:
        done = kept.get((task.name, task.path))
        if done is not None:
            await graph.checkpointer.aput_writes(fork, done, task.id)
    return thread_config(config["configurable"]["thread_id"])


def _ends_run(writes: list[tuple[str, Any]]) -> bool:
    """Whether a task's writes are the failure (or stop) that ended the run."""
    return any(channel in ("errors", "stop_reason") for channel, _ in writes)
