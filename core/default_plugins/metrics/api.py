"""What plugins get from the metrics hooks: `Metrics` (declare) and `CollectContext` (scrape).

Plugins never import this module (nor prometheus_client): they use the object a
hook passes them. See `hookspecs` and docs/metrics.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import ConfigError

PREFIX = "banktasks_"
NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
LABEL = re.compile(r"[a-z][a-z0-9_]{0,49}")
SECONDS_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""Histogram buckets in seconds, up to an hour (the longest default hard time limit)."""
GAUGE_MODES = ("livesum", "liveall", "livemax", "livemin", "livemostrecent")


def metric_name(plugin: str, name: str) -> str:
    """`banktasks_<plugin>_<name>`, with a plugin name's `-` as `_`; ConfigError if bad."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"plugin {plugin!r}: metric name {name!r} must be lower-case letters, digits "
            "and '_' (starting with a letter)"
        )
    return f"{PREFIX}{plugin.replace('-', '_')}_{name}"


def check_labels(plugin: str, name: str, labels: Iterable[str]) -> tuple[str, ...]:
    """The label names, checked (lower-case identifiers, no `le`/`quantile`)."""
    found = tuple(labels)
    for label in found:
        if not isinstance(label, str) or not LABEL.fullmatch(label) or label in ("le", "quantile"):
            raise ConfigError(f"plugin {plugin!r}: metric {name!r} has a bad label {label!r}")
    return found


class Instrument:
    """One declared metric: `.inc()`, `.observe()` or `.set()` with its labels as keywords."""

    def __init__(self, metric: Any, labels: tuple[str, ...]) -> None:
        self._metric = metric
        self._labels = labels
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, labels: dict[str, Any]) -> Any:
        if not self._labels:
            return self._metric
        key = tuple(str(labels.get(name, "")) for name in self._labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metric.labels(*key)
        return child

    def inc(self, amount: float = 1, **labels: Any) -> None:
        """Add `amount` (a counter or a gauge)."""
        self._child(labels).inc(amount)

    def observe(self, value: float, **labels: Any) -> None:
        """Record one value (a histogram)."""
        self._child(labels).observe(value)

    def set(self, value: float, **labels: Any) -> None:
        """Set the value (a gauge)."""
        self._child(labels).set(value)


class Metrics:
    """What `register_metrics(metrics)` gets: declares metrics named for one plugin."""

    def __init__(self, plugin: str, registry: Any = None) -> None:
        self.plugin = plugin
        self._registry = registry  # None: prometheus_client's default (multiprocess mode)

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Instrument:
        """A total that only grows: `banktasks_<plugin>_<name>_total`."""
        from prometheus_client import Counter

        full = metric_name(self.plugin, name.removesuffix("_total"))
        names = check_labels(self.plugin, name, labels)
        return Instrument(Counter(full, help, names, registry=self._registry), names)

    def histogram(
        self,
        name: str,
        help: str,
        labels: Iterable[str] = (),
        buckets: Iterable[float] | None = None,
    ) -> Instrument:
        """A distribution (seconds unless you give `buckets`)."""
        from prometheus_client import Histogram

        full = metric_name(self.plugin, name)
        names = check_labels(self.plugin, name, labels)
        chosen = tuple(buckets) if buckets is not None else SECONDS_BUCKETS
        return Instrument(
            Histogram(full, help, names, buckets=chosen, registry=self._registry), names
        )

    def gauge(
        self, name: str, help: str, labels: Iterable[str] = (), mode: str = "livesum"
    ) -> Instrument:
        """A value that goes up and down, added up (`mode`) over the live worker processes."""
        from prometheus_client import Gauge

        if mode not in GAUGE_MODES:
            raise ConfigError(
                f"plugin {self.plugin!r}: gauge {name!r} mode {mode!r}; one of "
                + ", ".join(GAUGE_MODES)
            )
        full = metric_name(self.plugin, name)
        names = check_labels(self.plugin, name, labels)
        return Instrument(
            Gauge(full, help, names, multiprocess_mode=mode, registry=self._registry),  # type: ignore[arg-type]
            names,
        )


@dataclass(frozen=True)
class CollectContext:
    """What `collect_metrics(ctx)` gets: the app, its database, the time, the plugin's settings."""

    app: Any
    db: Any
    now: datetime
    settings: Any
    plugin: str
