"""Hooks the `metrics` default plugin owns: a plugin's own Prometheus metrics.

Two kinds, use either or both:

- `register_metrics(metrics)`: declare counters, histograms and gauges that your
  code updates where things happen, in worker processes (multiprocess-safe: each
  pool process writes its own file, the endpoint adds them up);
- `collect_metrics(ctx)`: return samples computed when Prometheus scrapes the
  endpoint (a count in your tables, an age): plain dicts, nothing to import.

Every name gets the prefix `banktasks_<plugin>_`. Neither hook is called when
the `metrics` plugin is disabled (`BANKTASKS_DISABLE=metrics`).
"""

from __future__ import annotations

from typing import Any

from core import hookspec


@hookspec
def register_metrics(metrics: Any) -> None:
    """Declare the metrics your code updates in workers; keep what it returns.

    Called once in each worker's main process, before the pool starts, never in
    other processes. `metrics` names everything `banktasks_<your plugin>_<name>`:

    - `metrics.counter(name, help, labels=())` (exposed as `<name>_total`),
    - `metrics.histogram(name, help, labels=(), buckets=None)` (seconds by default),
    - `metrics.gauge(name, help, labels=(), mode="livesum")` (a gauge is added up over
      live processes; `mode` is prometheus-client's multiprocess mode).

    Each returns an instrument with `.inc(amount=1, **labels)`, `.observe(value,
    **labels)` or `.set(value, **labels)`. Keep it (a module-level dict is enough)
    and call it where the event happens: outside a worker, or with metrics off, it
    was never created, so look it up with a default (`METRICS.get("sent")`).
    """


@hookspec
def collect_metrics(ctx: Any) -> list[dict[str, Any]]:
    """Return samples computed at scrape time, in the metrics endpoint's process.

    `ctx` has `app`, `db`, `now` (aware UTC) and `settings` (your plugin's settings).
    Each sample is a dict: `name` (prefixed `banktasks_<your plugin>_`), `value`
    (a number), `help` (one line), `type` ("gauge", the default, or "counter": a
    total that only grows, exposed as `<name>_total`) and `labels` (a dict of str,
    optional). Samples of one name form one metric; give each the same `help`,
    `type` and label names. Keep it cheap (an indexed query): it runs on every scrape.
    An error is logged and shows as `banktasks_metrics_collector_up{plugin} 0`.
    """
    return []
