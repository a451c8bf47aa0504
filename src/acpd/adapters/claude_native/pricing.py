"""Adapters layer: what a Messages API call cost, from its usage and list prices. Pure data: it
must not call the API or guess a price it does not know (an unknown model has no cost)."""

from __future__ import annotations

from typing import Final

PER_MILLION_USD: Final = (
    # (model name prefix, input, output); cache writes cost 1.25 times input, cache reads 0.1 times.
    ("claude-opus-4-0", 15.0, 75.0),
    ("claude-opus-4-1", 15.0, 75.0),
    ("claude-opus-4-2025", 15.0, 75.0),
    ("claude-opus", 5.0, 25.0),
    ("claude-sonnet", 3.0, 15.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-haiku", 1.0, 5.0),
)
CONTEXT_WINDOW_TOKENS: Final = 200_000


def cost_usd(model: str, inputs: int, outputs: int, cache_write: int = 0, cache_read: int = 0) -> float | None:
    """The cost of one call, or None for a model without a known price."""
    for prefix, input_price, output_price in PER_MILLION_USD:
        if model.startswith(prefix):
            billed_input = inputs * input_price + cache_write * input_price * 1.25 + cache_read * input_price * 0.1
            return (billed_input + outputs * output_price) / 1_000_000
    return None
