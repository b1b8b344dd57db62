"""What a model call costs, from its token counts.

Prices are USD per million tokens. The table covers well-known hosted models; local and
self-hosted models cost nothing. `.loopengt/config.toml` overrides or extends it
(read into `Config.prices`):

    [prices."gpt-4o-mini"]
    input = 0.15
    output = 0.60
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

EMPTY: Mapping[str, tuple[float, float]] = MappingProxyType({})

# (input, output) USD per 1M tokens, by model name without the provider prefix. Replies name
# the dated snapshot that answered ("gpt-4o-mini-2024-07-18", "claude-sonnet-4-20250514"),
# which is priced like the name without its date; "-latest" and "-0" are aliases.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}

# only a date (or an alias) may follow a known name: "o3-mini" and "o3-pro" are other
# models at other prices, not snapshots of "o3"
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest|0)$")


def price_of(
    model: str | None, configured: Mapping[str, tuple[float, float]] = EMPTY
) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens, or None when the model is unknown (counted as 0);
    ``configured`` is the project's `[prices]` table (`Config.prices`), which wins."""
    if not model:
        return None
    bare = model.split(":", 1)[1] if ":" in model else model
    family = _SNAPSHOT.sub("", bare)
    for table in (configured, KNOWN_PRICES):
        for key in (model, bare, family):
            if key in table:
                return table[key]
    return None


def cost_usd(
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    configured: Mapping[str, tuple[float, float]] = EMPTY,
) -> float:
    price = price_of(model, configured)
    if price is None:
        return 0.0
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
