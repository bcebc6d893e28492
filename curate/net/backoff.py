"""When to try a transient failure again: exponential backoff with full jitter (AWS
Architecture Blog, "Exponential Backoff And Jitter", 2015: full jitter spreads retries of many
clients best), unless the server said when with ``Retry-After`` (RFC 9110 §10.2.3: seconds or
an HTTP date), which wins; every wait is capped so one server cannot park a worker."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header at wall-clock time ``now`` (epoch
    seconds); ``None`` when absent or unreadable. A date in the past means 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives naive for "-0000"
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(attempt: int, backoff: float, cap: float, retry_after: float | None, rng: random.Random) -> float:
    """Wait before retry number ``attempt`` (0 for the first retry)."""
    if retry_after is not None:
        return min(retry_after, cap)
    return rng.uniform(0.0, min(cap, backoff * 2**attempt))
