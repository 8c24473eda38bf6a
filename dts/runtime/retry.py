"""The retry policy's delay schedule: one pure function (base × 2^n, capped, optional equal jitter)."""

from __future__ import annotations

import random
from collections.abc import Callable

from dts.config import RetryPolicy


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry number `attempt + 1`: base * 2**attempt, capped at backoff_max.

    With jitter the delay is drawn from [delay/2, delay] ("equal jitter"), so retries of many tasks
    spread out while each delay still grows on average and never drops to zero.
    """
    delay = min(policy.backoff_max, policy.backoff_base * (2**attempt))
    if policy.jitter:
        delay = delay / 2 + rand() * delay / 2
    return delay


def backoff_schedule(policy: RetryPolicy, rand: Callable[[], float] = random.random) -> list[float]:
    return [backoff_delay(n, policy, rand) for n in range(policy.max_retries)]
