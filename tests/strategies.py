"""Hypothesis strategies shared by the property tests: arbitrary JSON values as the wire carries them."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def property_settings(max_examples: int) -> settings:
    # generation, not the code under test, is what runs slow on a loaded machine
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
