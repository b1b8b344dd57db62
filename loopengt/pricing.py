"""What a model call costs, from its token counts.

Prices are USD per million tokens. The table covers well-known hosted models; local and
self-hosted models cost nothing. `.loopengt/config.toml` overrides or extends it:

    [prices."gpt-4o-mini"]
    input = 0.15
    output = 0.60
"""

from __future__ import annotations

from loopengt.config import config_section

# (input, output) USD per 1M tokens, by model name without the provider prefix
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-3-7-sonnet-latest": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-opus-4-0": (15.00, 75.00),
}


def _configured() -> dict[str, tuple[float, float]]:
    prices: dict[str, tuple[float, float]] = {}
    for name, entry in config_section("prices").items():
        if isinstance(entry, dict):
            prices[name] = (float(entry.get("input", 0)), float(entry.get("output", 0)))
    return prices


def price_of(model: str | None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens, or None when the model is unknown (counted as 0)."""
    if not model:
        return None
    bare = model.split(":", 1)[1] if ":" in model else model
    for table in (_configured(), KNOWN_PRICES):
        for key in (model, bare):
            if key in table:
                return table[key]
    # dated snapshots ("gpt-4o-mini-2024-07-18") are priced like their family
    family = max((k for k in KNOWN_PRICES if bare.startswith(k + "-")), key=len, default=None)
    return KNOWN_PRICES[family] if family else None


def cost_usd(model: str | None, input_tokens: int, output_tokens: int) -> float:
    price = price_of(model)
    if price is None:
        return 0.0
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
