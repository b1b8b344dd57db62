"""The six LoopSpec patterns, one module each with ``build(ctx) -> StateGraph``, over the
shared graph machinery in :mod:`loopengt.graph`."""
