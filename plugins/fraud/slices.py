"""Cutting an analysis window into equal time slices, and adding the slices' results up.

The rules report a pattern only in the slice where it is anchored (a transaction's
time, a burst's first row) and read up to a rule window past the slice on both
sides, so the slices of a window together find exactly what one analysis of it
finds, each pattern in exactly one slice (see `plugins.fraud.builtin`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, Field

from core.db import from_micros, to_micros
from core.validators import UTCMoment

MAX_CHUNKS = 64
"""The most slices one chunked analysis is cut into."""


def split_window(since: datetime, until: datetime, chunks: int) -> list[tuple[datetime, datetime]]:
    """`[since, until)` as `chunks` contiguous slices of equal length (to the microsecond).

    Raises ValueError when the bounds are out of order, or the window is shorter than
    `chunks` microseconds (a slice would be empty).
    """
    start, end = to_micros(since), to_micros(until)
    if not 1 <= chunks <= MAX_CHUNKS:
        raise ValueError(f"chunks={chunks}: give a number of slices from 1 to {MAX_CHUNKS}")
    if end - start < chunks:
        raise ValueError(
            f"since={since.isoformat()} until={until.isoformat()}: the window must be longer "
            f"than {chunks} microseconds to cut it into {chunks} slices; give a later until "
            "or fewer chunks"
        )
    cuts = [start + (end - start) * i // chunks for i in range(chunks + 1)]
    return [(from_micros(a), from_micros(b)) for a, b in pairwise(cuts)]


class SliceResult(BaseModel):
    """The part of one slice's `analyze_fraud_patterns` result that is added up."""

    since: UTCMoment
    until: UTCMoment
    scanned: int = Field(ge=0)
    findings: int = Field(ge=0)
    alerts_created: int = Field(ge=0)
    by_rule: dict[str, int]
    emitted: int = Field(ge=0)
    notify_failed: int = Field(ge=0)
    suppressed: int = Field(0, ge=0)
    suppressed_by_rule: dict[str, int] = Field(default_factory=dict)
    cases_opened: int = Field(0, ge=0)
    case_notify_failed: int = Field(0, ge=0)


def combine(results: Iterable[SliceResult | dict[str, Any]]) -> dict[str, Any]:
    """One result shaped like `analyze_fraud_patterns`'s from the results of its slices.

    `since`/`until` span the slices; counts, `by_rule` and `suppressed_by_rule` are
    summed (a slice result without the case and suppression counts adds 0); `chunks`
    is the number of slices.
    """
    parts = [r if isinstance(r, SliceResult) else SliceResult.model_validate(r) for r in results]
    if not parts:
        raise ValueError("no slice results to combine: give at least one")
    by_rule: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for part in parts:
        for rule, count in part.by_rule.items():
            by_rule[rule] = by_rule.get(rule, 0) + count
        for rule, count in part.suppressed_by_rule.items():
            suppressed[rule] = suppressed.get(rule, 0) + count
    return {
        "since": min(p.since for p in parts).isoformat(),
        "until": max(p.until for p in parts).isoformat(),
        "from_watermark": False,
        "scanned": sum(p.scanned for p in parts),
        "findings": sum(p.findings for p in parts),
        "alerts_created": sum(by_rule.values()),
        "by_rule": dict(sorted(by_rule.items())),
        "emitted": sum(p.emitted for p in parts),
        "notify_failed": sum(p.notify_failed for p in parts),
        "suppressed": sum(p.suppressed for p in parts),
        "suppressed_by_rule": dict(sorted(suppressed.items())),
        "cases_opened": sum(p.cases_opened for p in parts),
        "case_notify_failed": sum(p.case_notify_failed for p in parts),
        "chunks": len(parts),
    }
