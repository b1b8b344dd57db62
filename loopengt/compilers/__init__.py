"""One module per LoopSpec pattern, each with ``build(ctx) -> StateGraph``, over the shared
state (state.py) and node builders (nodes.py)."""
