"""RetryPolicy: which exceptions retry, how often and how long to wait between tries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """Retry on `retry_on` exceptions with exponential backoff `backoff * 2**retries`.

    The wait is capped at `backoff_max` seconds; with `jitter` the actual wait is a
    random value in `[0, capped]` (Celery's full jitter). Any exception not listed
    fails the task at once; argument validation errors never retry.
    """

    max_retries: int = 3
    backoff: int = 2
    backoff_max: int = 600
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"RetryPolicy.max_retries must be >= 0, got {self.max_retries}")
        if self.backoff < 1:
            raise ValueError(f"RetryPolicy.backoff must be >= 1 second, got {self.backoff}")
        if self.backoff_max < self.backoff:
            raise ValueError(
                f"RetryPolicy.backoff_max ({self.backoff_max}) must be >= backoff ({self.backoff})"
            )
        for exc in self.retry_on:
            if not (isinstance(exc, type) and issubclass(exc, BaseException)):
                raise TypeError(f"RetryPolicy.retry_on must hold exception classes, got {exc!r}")

    def countdown(self, retries: int, rng: random.Random | None = None) -> int:
        """Seconds to wait before retry number `retries + 1` (same formula as Celery)."""
        capped = min(self.backoff_max, self.backoff * (2**retries))
        if self.jitter:
            return (rng or random).randrange(capped + 1)
        return capped

    @property
    def longest_wait(self) -> int:
        """The longest single wait this policy can produce, in seconds."""
        return min(self.backoff_max, self.backoff * (2 ** max(self.max_retries - 1, 0)))

    def celery_options(self) -> dict[str, Any]:
        """The Celery task options this policy maps onto."""
        return {
            "autoretry_for": self.retry_on,
            "max_retries": self.max_retries,
            "retry_backoff": self.backoff,
            "retry_backoff_max": self.backoff_max,
            "retry_jitter": self.jitter,
        }


NO_RETRY = RetryPolicy(max_retries=0, retry_on=())
