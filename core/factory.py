"""The Celery app factory: settings + plugins → a configured Celery app.

`create_app(settings, plugins=[...])` builds one; nothing here builds an app
by itself. The default app of a process (what `celery -A core`, `banktasks`
and `core.tasks` use) is `core.celery.app`. Celery signals are connected per
app and act only for their own app's tasks and processes.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import structlog
from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils import uuid
from kombu import Queue
from pydantic_core import to_jsonable_python

from core.bulk import DEFAULT_BATCH_SIZE, check_bulk_options, send_many
from core.db import Database, make_private
from core.errors import ConfigError, TaskArgumentError
from core.hookspecs import Broker
from core.kombu_fixes import closed_transport_is_a_connection_error
from core.logging import SECRET_KEY, configure_logging, get_logger, redact_value
from core.outbox import enqueue
from core.plugins import PluginSet, PluginSpec, build_plugin_set
from core.poison import install_poison_guard
from core.priority import STEPS, check_priority
from core.ratelimit import check_submission, effective_limit
from core.resultcache import cache_key, effective_ttl, lookup, store
from core.runtime import Runtime
from core.schedule import OFF_VALUES, Schedule
from core.settings import (
    PluginSettings,
    Settings,
    load_plugin_settings,
    load_settings,
    warn_about_opt_outs,
)
from core.sources import check_mapping, mapped_tables
from core.startup import freeze_before_fork
from core.taskdef import TaskDef
from core.timelimits import TaskTimeLimitExceeded, task_limits

closed_transport_is_a_connection_error()  # a kombu workaround, see its docstring

DEFAULT_QUEUE = "celery"
MIN_VISIBILITY_TIMEOUT = 3600
SENT_AT_HEADER = "banktasks_sent_at"
"""Message header: when the message was sent (Unix time, seconds; every send, retries too)."""


def message_header(request: Any, name: str) -> Any:
    """A custom header of the message a task request came from (None if absent): Celery
    makes it a request attribute in a worker, and keeps it in `headers` when eager."""
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


_log = get_logger("banktasks.task")
BEAT_LOCK_TIMEOUT = 60
TASK_ID = re.compile(r"\S{1,64}")
"""A task id a worker accepts (core.poison checks the same on the other side)."""
OUTBOX_OPTIONS = frozenset(
    {"task_id", "countdown", "eta", "expires", "priority", "queue", "time_limit", "soft_time_limit"}
)
"""Celery options `apply_async_on_commit` takes."""
MAX_RETRIES_HEADER = 1000
"""The highest `retries` header a task without `max_retries` accepts."""


_retrying: ContextVar[bool] = ContextVar("banktasks_retrying", default=False)
"""True while `BanktasksTask.retry` sends the retry of the running task (set by no caller)."""
_checked: ContextVar[str | None] = ContextVar("banktasks_checked", default=None)
"""The task name `BanktasksTask.apply_async` has just checked, so `send_task` does not again."""

REPR_CHARS = 1024
"""Longest `argsrepr`/`kwargsrepr` (what task events and Flower show), like Celery's."""
REPR_STRING = 200
REPR_ITEMS = 50


class BanktasksTask(Task):
    """Base class of every plugin task: validates arguments and binds log context."""

    spec: TaskDef
    plugin: str
    route_queue: str
    dont_autoretry_for = (TaskArgumentError, TaskTimeLimitExceeded)

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Validate the arguments from the type hints, then send (nothing is sent if bad).

        The checks (see `BanktasksCelery.check_send`) run here and, for a caller
        that sends by name, in `BanktasksCelery.send_task`: every path that submits a
        task passes them once.
        """
        args, kwargs = self.app.check_send(self, args, kwargs, options)
        return self.publish_checked(args, kwargs, options)

    def publish_checked(self, args: Any, kwargs: Any, options: dict[str, Any]) -> Any:
        """Celery's `apply_async` for arguments `check_send` has passed (not checked again)."""
        # The message carries time limits only when the call sets them: otherwise the
        # worker's settings (BANKTASKS_TIME_LIMITS …) decide, not the sender's.
        options.setdefault("time_limit", None)
        options.setdefault("soft_time_limit", None)
        token = _checked.set(self.name)
        try:
            return super().apply_async(args=args, kwargs=kwargs, **options)
        finally:
            _checked.reset(token)

    def delay_on_commit(self, session: Any, *args: Any, **kwargs: Any) -> str:
        """Send this task when `session`'s transaction commits; return its task id.

        `session` is the caller's SQLAlchemy Session on banktasks' database. The
        arguments are checked now, as `.delay()` checks them (a bad one raises and
        nothing is written); the submission is written into the outbox table in the
        session's transaction and published right after the commit. A rollback sends
        nothing. If the process dies between the commit and the publish, or the broker
        is down then, the `delivery` plugin's relay publishes it later with the same
        id. See core.outbox.
        """
        return self.apply_async_on_commit(session, args, kwargs)

    def apply_async_on_commit(
        self, session: Any, args: Any = None, kwargs: Any = None, **options: Any
    ) -> str:
        """`delay_on_commit` with Celery's options: task_id, countdown, eta, expires,
        priority, queue, time_limit, soft_time_limit. A countdown (and an expiry in
        seconds) counts from this call, not from the publish."""
        unknown = sorted(set(options) - OUTBOX_OPTIONS)
        if unknown:
            raise TaskArgumentError(
                f"{self.name}: apply_async_on_commit does not take {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(OUTBOX_OPTIONS))}"
            )
        args, kwargs = self.app.check_send(self, args, kwargs, options)
        task_id = str(options.pop("task_id", None) or uuid())
        now = datetime.now(UTC)
        if options.get("countdown") is not None:
            options["eta"] = now + timedelta(seconds=float(options.pop("countdown")))
        if isinstance(options.get("expires"), int | float):
            options["expires"] = now + timedelta(seconds=float(options["expires"]))
        for name in ("eta", "expires"):
            if isinstance(options.get(name), datetime):
                options[name] = options[name].isoformat()
        enqueue(session, self.name, task_id, list(args), kwargs, options, self.app.send_checked)
        return task_id

    def delay_many(
        self,
        items: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **options: Any,
    ) -> list[str]:
        """Send one task per item (a dict of keyword arguments); return the task ids.

        Every item is validated (arguments, message size) before anything is sent: a bad
        item raises TaskArgumentError naming its index ("item 41: ...") and nothing is
        sent. The submission limit counts every item, all or nothing
        (SubmissionRateLimited naming the key, nothing sent). The messages are those
        `.apply_async(kwargs=item, **options)` sends, published `batch_size` per round
        trip. `options`: countdown, eta (below the visibility timeout), expires,
        priority, queue, time_limit, soft_time_limit; not task_id (ids are generated)
        nor retries. Memory stays flat: validated items wait in a temporary file.
        See core.bulk.
        """
        check_bulk_options(self.name, options, batch_size)
        _check_countdown(self, options)
        app = self.app
        max_bytes = app.runtime.settings.banktasks_max_message_bytes

        def validate(kwargs: dict[str, Any]) -> dict[str, Any]:
            message = self.spec.message_kwargs((), kwargs)
            _check_size(self, (), message, max_bytes)
            return message

        limit = self.spec.submit_limit
        per_minute = 0
        if limit is not None:
            per_minute = effective_limit(limit, app.runtime.settings_for(self.plugin))
        return send_many(
            self,
            items,
            validate=validate,
            arguments_repr=_arguments_repr,
            limit=limit,
            per_minute=per_minute,
            batch_size=batch_size,
            options=options,
        )

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Any = None,
        throw: bool = True,
        eta: Any = None,
        countdown: Any = None,
        max_retries: Any = None,
        **options: Any,
    ) -> Any:
        """Celery's retry, with the wait capped at half the broker visibility timeout.

        A waiting retry is held unacknowledged by a worker; held longer than the
        visibility timeout, it would be redelivered and run twice. With the computed
        timeout no policy reaches the cap; it only bites when BROKER_VISIBILITY_TIMEOUT
        is set lower (then retries come sooner, and give up sooner).
        """
        limit = self.app.conf.broker_transport_options.get("visibility_timeout")
        delay = _delay_seconds({"countdown": countdown, "eta": eta})
        if limit and delay is not None and delay > limit // 2:
            countdown, eta = max(1, limit // 2), None
        token = _retrying.set(True)
        try:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        finally:
            _retrying.reset(token)

    def signature(self, args: Any = None, *starargs: Any, **starkwargs: Any) -> Any:
        """Celery's signature; an immutable one (`.si()`) is validated when it is built."""
        sig = super().signature(args, *starargs, **starkwargs)
        if sig.immutable:
            sig.kwargs = self.spec.message_kwargs(sig.args, sig.kwargs)
            sig.args = ()
        return sig

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        retries = request.retries or 0
        ceiling = self.max_retries if self.max_retries is not None else MAX_RETRIES_HEADER
        if type(retries) is not int or not 0 <= retries <= ceiling:
            # Celery computes a backoff of 2**retries: a forged header would loop (negative)
            # or burn CPU and memory (huge); refused before it is used, never retried.
            raise TaskArgumentError(
                f"{self.name}: message header retries={retries!r:.40} is not a whole "
                f"number from 0 to {ceiling}; the message is forged or corrupt, not run"
            )
        with structlog.contextvars.bound_contextvars(
            task_id=request.id, task_name=self.name, plugin=self.plugin, retries=retries
        ):
            started = time.monotonic()
            try:
                return super().__call__(*args, **kwargs)
            finally:
                self._log_if_slow(time.monotonic() - started)

    def soft_limit(self) -> float | None:
        """The soft time limit of the run in progress (a call may set its own)."""
        limits = self.request.timelimit or (None, None)
        return limits[1] or self.soft_time_limit

    def _log_if_slow(self, seconds: float) -> None:
        soft = self.soft_limit()
        ratio = self.app.runtime.settings.banktasks_slow_task_ratio
        if soft and seconds > ratio * soft:
            _log.warning(
                "task.slow",
                seconds=round(seconds, 3),
                soft_time_limit=soft,
                share=round(seconds / soft, 2),
            )


def _sent_by_celery() -> bool:
    """True while a worker sends the next chain step or a link callback (Celery 5.5+
    marks that send with a context variable; without it every send is validated)."""
    from celery.app import amqp

    flag = getattr(amqp, "_callback_publish_retry", None)
    return bool(flag is not None and flag.get())


def _delay_seconds(options: dict[str, Any]) -> float | None:
    """How long from now the message asks to wait (`countdown`, else `eta`), if at all."""
    if options.get("countdown") is not None:
        return float(options["countdown"])
    eta = options.get("eta")
    if eta is None:
        return None
    if isinstance(eta, str):
        eta = datetime.fromisoformat(eta)
    if eta.tzinfo is None:  # Celery reads a naive eta in the app's timezone: UTC
        eta = eta.replace(tzinfo=UTC)
    return float((eta - datetime.now(UTC)).total_seconds())


def _check_size(task: Task, args: Any, kwargs: Any, limit: int) -> None:
    """Refuse a message whose JSON arguments are larger than BANKTASKS_MAX_MESSAGE_BYTES."""
    size = len(json.dumps([args, kwargs], separators=(",", ":"), default=str).encode())
    if size > limit:
        raise TaskArgumentError(
            f"{task.name}: the arguments take {size} bytes as JSON, more than "
            f"BANKTASKS_MAX_MESSAGE_BYTES={limit}; send a reference (an id, a file name) "
            "instead of the data"
        )


def _arguments_repr(value: Any) -> str:
    """What task events (and Flower's task pages) show of the arguments: redacted."""
    text = repr(_shortened(value))
    return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 3] + "..."


def _shortened(value: Any, key: str = "", depth: int = 0) -> Any:
    """`value` redacted, with long strings and collections cut (redacting a whole
    megabyte would cost more than sending it). A string is redacted on a window four
    times longer than what is shown, so a value cut in the middle is not half shown."""
    if isinstance(value, str):
        if len(value) <= REPR_STRING:
            return redact_value(key, value)
        shown = redact_value(key, value[: 4 * REPR_STRING])
        return shown[:REPR_STRING] + "..." if isinstance(shown, str) else shown
    if depth > 3:
        return "..."
    if isinstance(value, dict):
        items = list(value.items())[:REPR_ITEMS]
        if SECRET_KEY.search(key):
            return redact_value(key, value)
        return {k: _shortened(v, str(k), depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        return [_shortened(v, "", depth + 1) for v in value[:REPR_ITEMS]]
    return redact_value(key, value)


def _check_countdown(task: Task, options: dict[str, Any]) -> None:
    """Refuse a countdown/eta beyond the broker's visibility timeout (it would run twice)."""
    delay = _delay_seconds(options)
    limit = task.app.conf.broker_transport_options.get("visibility_timeout")
    if delay is not None and limit and delay >= limit:
        given = "countdown" if options.get("countdown") is not None else "eta"
        raise TaskArgumentError(
            f"{task.name}: {given}={options[given]} ({delay:.0f}s from now) is not below the "
            f"broker visibility timeout ({limit}s); a longer delay would be redelivered and run "
            "twice. Use a shorter delay or schedule it with beat."
        )


def _runner(spec: TaskDef) -> Any:
    """The function Celery runs: validate again in the worker, call, return JSON-safe."""

    def run(*args: Any, **kwargs: Any) -> Any:
        model = spec.validate(args, kwargs)
        cache = _cache_for(spec, model)
        if cache is not None:
            hit, value = _cached(*cache)
            if hit:
                return value
        started = time.monotonic()
        try:
            result = to_jsonable_python(spec.fn(**spec.call_kwargs(model)))
        except SoftTimeLimitExceeded:
            from celery import current_task

            soft = current_task.soft_limit() if current_task else None
            elapsed = time.monotonic() - started
            _log.warning("task.time_limit", soft_time_limit=soft, seconds=round(elapsed, 3))
            raise TaskTimeLimitExceeded(
                f"{spec.display_name} was stopped at its soft time limit of {soft} s (after "
                f"{elapsed:.1f} s) and is not retried; to give it longer set "
                f"BANKTASKS_TIME_LIMITS={spec.display_name}=<soft>/<hard> (seconds)"
            ) from None
        if cache is not None:
            _keep(*cache, result)
        return result

    run.__name__ = spec.fn.__name__
    run.__qualname__ = spec.fn.__qualname__
    run.__doc__ = spec.fn.__doc__
    run.__module__ = spec.fn.__module__
    return run


def _cache_for(spec: TaskDef, model: Any) -> tuple[Any, str, int] | None:
    """(redis client, key, ttl) when this run's result is cached, else None."""
    if not spec.cache_ttl or spec.name is None:
        return None
    from celery import current_app

    app = current_app._get_current_object()
    if not getattr(app, "runtime", None) or not app.runtime.settings.banktasks_result_cache:
        return None
    plugin_settings = app.runtime.settings_for(spec.name.split(".", 1)[0])
    ttl = effective_ttl(spec.cache_ttl, plugin_settings)
    if not ttl:
        return None
    key = cache_key(spec.name, spec.cache_version, model.model_dump(mode="json"))
    return app.redis_client(), key, ttl


def _cached(client: Any, key: str, ttl: int) -> tuple[bool, Any]:
    try:
        hit, value = lookup(client, key)
    except Exception as exc:  # the cache never makes a task fail: it runs instead
        _log.warning("task.cache_unavailable", error=f"{type(exc).__name__}: {exc}")
        return False, None
    if hit:
        _log.info("task.cache_hit")
    return hit, value


def _keep(client: Any, key: str, ttl: int, result: Any) -> None:
    try:
        store(client, key, result, ttl)
    except Exception as exc:
        _log.warning("task.cache_unavailable", error=f"{type(exc).__name__}: {exc}")


class BanktasksCelery(Celery):
    """A Celery app with a `runtime`, and a plugin's broker started before it connects."""

    runtime: Runtime
    broker: Broker | None = None
    _broker_lock = threading.Lock()
    _broker_ready = False

    def ensure_broker(self) -> None:
        """Start the broker a plugin runs for this app (`register_broker`), once."""
        if self.broker is None or self._broker_ready:
            return
        with self._broker_lock:
            if not self._broker_ready:
                self.broker.start()
                self._broker_ready = True

    def redis_client(self) -> Any:
        """A redis client on the broker (for locks, rate limits); created once."""
        client = self.__dict__.get("_redis_client")
        if client is None:
            import redis

            self.ensure_broker()
            client = redis.Redis.from_url(
                self.conf.broker_url, socket_timeout=5, socket_connect_timeout=5
            )
            self.__dict__["_redis_client"] = client
        return client

    def check_send(
        self, task: BanktasksTask, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Check one submission of a banktasks task; return the arguments to send.

        Arguments are validated from the type hints (except for a retry, or a chain step
        or link callback that a worker sends once the step before it has succeeded: that
        task's own worker validates them, so bad arguments fail as that task). For every
        send: the message size limit, and `retries`, which only Celery's retry may set;
        for every send but a retry: the submission limit. `argsrepr`/`kwargsrepr` (what
        task events show) are redacted. `options` is updated in place.
        """
        retrying = _retrying.get()
        if options.get("retries") and not retrying:
            raise TaskArgumentError(
                f"{task.name}: retries={options['retries']!r:.40} is set by Celery when "
                "a task retries; a caller cannot set it"
            )
        task_id = options.get("task_id")
        if task_id is not None and not (
            TASK_ID.fullmatch(str(task_id)) and str(task_id).isprintable()
        ):
            raise TaskArgumentError(
                f"{task.name}: task_id={task_id!r:.80} is not 1 to 64 printable characters "
                "without spaces; a worker would refuse the message"
            )
        check_priority(task.name, options.get("priority"))
        if retrying or _sent_by_celery():
            args, kwargs = tuple(args or ()), dict(kwargs or {})
        else:
            args, kwargs = (), task.spec.message_kwargs(args, kwargs)
            _check_countdown(task, options)
        _check_size(task, args, kwargs, self.runtime.settings.banktasks_max_message_bytes)
        limit = task.spec.submit_limit
        if limit is not None and not retrying:  # a retry is not a new submission
            per_minute = effective_limit(limit, self.runtime.settings_for(task.plugin))
            check_submission(self.redis_client(), task.name, limit, per_minute, kwargs)
        options["argsrepr"] = _arguments_repr(list(args))
        options["kwargsrepr"] = _arguments_repr(kwargs)
        return args, kwargs

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Celery's send_task; a banktasks task sent by name passes the same checks as
        `.apply_async()` (arguments, size, `retries`, submission limit)."""
        if _checked.get() != name:
            task = self.tasks.get(name)
            if isinstance(task, BanktasksTask) and task.app is self:
                args, kwargs = self.check_send(task, args, kwargs, options)
        return super().send_task(name, args, kwargs, **options)

    def send_checked(
        self,
        name: str,
        task_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> None:
        """Publish a submission that `check_send` passed earlier (the outbox's): with
        its id, without checking it again (a submission limit is not taken twice)."""
        options = dict(options, task_id=task_id)
        for moment in ("eta", "expires"):
            if isinstance(options.get(moment), str):
                options[moment] = datetime.fromisoformat(options[moment])
        task = self.tasks.get(name)
        if isinstance(task, BanktasksTask) and task.app is self:
            task.publish_checked(args, kwargs, options)
        else:  # a task this process does not run: sent by name for the workers that do
            Celery.send_task(self, name, args, kwargs, **options)

    def _get_backend(self) -> Any:
        """Celery's result backend; it keeps a task's arguments with its result only if
        BANKTASKS_KEEP_TASK_ARGUMENTS asks for it (they may hold personal data)."""
        backend = super()._get_backend()
        if not self.runtime.settings.banktasks_keep_task_arguments:
            result_meta = backend._get_result_meta

            def without_arguments(*args: Any, **kwargs: Any) -> Any:
                meta = result_meta(*args, **kwargs)
                meta.pop("args", None)
                meta.pop("kwargs", None)
                return meta

            backend._get_result_meta = without_arguments
        return backend

    def _connection(self, url: Any, *args: Any, **kwargs: Any) -> Any:
        self.ensure_broker()
        return super()._connection(url, *args, **kwargs)


def _plugin_settings(plugin_set: PluginSet, settings: Settings) -> dict[str, PluginSettings]:
    declared: dict[str, PluginSettings] = {}
    for plugin, result in plugin_set.calls("register_settings"):
        name, model = result
        declared[plugin] = load_plugin_settings(name, model, settings)
    for plugin in plugin_set.enabled():
        if plugin not in declared:
            declared[plugin] = load_plugin_settings(plugin, PluginSettings, settings)
    return declared


def _bind_tasks(app: BanktasksCelery, plugin_set: PluginSet) -> dict[str, TaskDef]:
    bound: dict[str, TaskDef] = {}
    settings = app.runtime.settings
    overrides = settings.banktasks_time_limits
    for plugin, specs in plugin_set.calls("register_tasks"):
        for spec in specs:
            if not isinstance(spec, TaskDef):
                raise ConfigError(
                    f"plugin {plugin!r}: register_tasks() returned {spec!r}; "
                    "decorate the function with @core.task"
                )
            name = f"{plugin}.{spec.fn.__name__}"
            if name in bound:
                raise ConfigError(f"plugin {plugin!r}: task {name} is registered twice")
            spec.name = name
            try:
                limits = task_limits(name, spec.options, settings.default_time_limits, overrides)
                check_priority(f"@task {name}", spec.options.get("priority"))
            except ValueError as exc:
                raise ConfigError(f"plugin {plugin!r}: {exc}") from None
            options = {
                "route_queue": spec.queue or plugin,
                "acks_late": spec.acks_late,
                "reject_on_worker_lost": spec.acks_late,
                # Celery's default: no STARTED state (one more result-backend write per
                # task); long tasks ask for it with @task(track_started=True).
                "track_started": False,
                **spec.retry.celery_options(),
                # a task's default priority goes in its route (Celery deprecates the attribute)
                **{k: v for k, v in spec.options.items() if k != "priority"},
                "soft_time_limit": limits.soft,
                "time_limit": limits.hard,
            }
            app.task(
                _runner(spec),
                name=name,
                base=BanktasksTask,
                bind=False,
                typing=False,
                shared=False,
                spec=spec,
                plugin=plugin,
                **options,
            )
            bound[name] = spec
    unknown = sorted(set(overrides) - set(bound))
    if unknown:
        raise ConfigError(
            f"BANKTASKS_TIME_LIMITS names {', '.join(unknown)}: no such task; "
            f"tasks: {', '.join(sorted(bound)) or '-'}"
        )
    return bound


def _route(queue: str, spec: TaskDef) -> dict[str, Any]:
    """A task's route: its queue, and its default priority if it declares one."""
    priority = spec.options.get("priority")
    return {"queue": queue} if priority is None else {"queue": queue, "priority": priority}


def _beat_schedule(
    plugin_set: PluginSet, plugin_settings: dict[str, PluginSettings]
) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {}
    for plugin in plugin_set.enabled():
        psettings = plugin_settings[plugin]
        caller = plugin_set.pm.subset_hook_caller(
            "register_schedule",
            remove_plugins=[p for n, p in plugin_set.pm.list_name_plugin() if n != plugin],
        )
        entries: list[Schedule] = [e for result in caller(settings=psettings) for e in result]
        override = psettings.schedule
        switching_off = (override or "").strip().lower() in OFF_VALUES
        if override and not switching_off and len(entries) > 1:
            raise ConfigError(
                f"{plugin.upper()}_SCHEDULE={override!r}: plugin {plugin!r} has "
                f"{len(entries)} schedule entries; set 'off' or change them in code"
            )
        for entry in entries:
            where = f"{plugin.upper()}_SCHEDULE"
            effective = entry.with_override(override, where)
            if effective is None:
                continue
            if effective.task.name is None:
                raise ConfigError(
                    f"plugin {plugin!r}: schedule {entry.name!r} names task "
                    f"{entry.task.fn.__name__!r}, which no enabled plugin registers"
                )
            if entry.name in schedule:
                raise ConfigError(f"plugin {plugin!r}: schedule name {entry.name!r} is taken")
            schedule[entry.name] = {
                "task": effective.task.name,
                "schedule": effective.celery_schedule(where),
                "kwargs": effective.task.message_kwargs((), effective.kwargs),
                "options": dict(effective.options),
            }
    return schedule


def _visibility_timeout(
    specs: dict[str, TaskDef], hard_limits: dict[str, int], configured: int | None = None
) -> int:
    """BROKER_VISIBILITY_TIMEOUT, else one that exceeds every retry wait and time limit."""
    longest = max((s.retry.longest_wait for s in specs.values()), default=0)
    limit, task_name = max(((v, k) for k, v in hard_limits.items()), default=(0, ""))
    if configured is not None:
        if configured <= limit:
            raise ConfigError(
                f"BROKER_VISIBILITY_TIMEOUT={configured}: must be longer than the longest task "
                f"time limit ({limit} s, {task_name}), or a running task is redelivered and runs "
                "twice; raise it, or lower the time limits (BANKTASKS_TIME_LIMIT, "
                "BANKTASKS_SOFT_TIME_LIMIT, BANKTASKS_TIME_LIMITS)"
            )
        return configured
    return max(MIN_VISIBILITY_TIMEOUT, 2 * longest + limit + 60)


def _transport_options(visibility_timeout: int) -> dict[str, Any]:
    """Redis transport options: the visibility timeout, and how often workers look for
    messages whose worker died (unacked for longer than it): about a tenth of it, at
    most every 100 s (kombu's default), so a short timeout also recovers quickly. The
    lock around that look expires with the timeout too (kombu: 300 s), so a worker killed
    while holding it does not hold up the others for longer than the timeout itself."""
    sweep = min(100, max(1, visibility_timeout // 10))
    interval = min(10, sweep)
    return {
        "visibility_timeout": visibility_timeout,
        "priority_steps": STEPS,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": max(1, sweep // interval),
        "unacked_mutex_expire": min(300, visibility_timeout // 2),
    }


def _redbeat_connection(broker_url: str) -> dict[str, Any]:
    """RedBeat's URL without the credentials, and the credentials as client options."""
    parts = urlsplit(broker_url)
    options: dict[str, Any] = {}
    if parts.password is not None:
        options["password"] = unquote(parts.password)
        if parts.username:
            options["username"] = unquote(parts.username)
        host = parts.netloc.rpartition("@")[2]
        broker_url = urlunsplit(parts._replace(netloc=host))
    return {"redbeat_redis_url": broker_url, "redbeat_redis_options": options}


CORE_TABLES = ("users", "accounts", "transactions")


def _runtime(
    settings: Settings, plugin_set: PluginSet, plugin_settings: dict[str, PluginSettings]
) -> Runtime:
    """The Runtime: banktasks' database (in DATABASE_SCHEMA, if set) and, with
    DATA_MAPPING, the bank's read-only database (DATA_DATABASE_URL, else DATABASE_URL's)
    and its tables seen as the core's."""
    mapping = settings.data_mapping
    url = settings.sqlalchemy_url
    if settings.database_schema and not url.startswith("postgresql"):
        raise ConfigError(
            f"DATABASE_SCHEMA={settings.database_schema}: schemas need PostgreSQL; with SQLite "
            "give banktasks' tables a database file of their own (DATABASE_URL) instead"
        )
    if settings.data_database_url and not mapping:
        raise ConfigError(
            "DATA_DATABASE_URL is set but DATA_MAPPING is not: say which of the bank's tables "
            "hold users, accounts and transactions (see docs/existing-database.md)"
        )
    skip = CORE_TABLES if mapping else ()
    db = Database(url, schema=settings.database_schema, skip_tables=skip)
    runtime = Runtime(settings, plugin_set, plugin_settings, db)
    if mapping:
        runtime.data_db = Database(settings.data_database_url or url, read_only=True)
        runtime.data = mapped_tables(mapping, runtime.data_db.dialect)
    return runtime


def check_data_mapping(runtime: Runtime) -> None:
    """ConfigError (one line) when DATA_MAPPING does not fit the bank's database."""
    mapping = runtime.settings.data_mapping
    if mapping is not None and runtime.data_db is not None:
        check_mapping(mapping, runtime.data_db.engine)


def create_app(
    settings: Settings | None = None, plugins: list[PluginSpec] | None = None
) -> BanktasksCelery:
    """Build a Celery app from settings (default: `core.load_settings()`) and plugins.

    With `plugins=None` every installed `banktasks` entry point is loaded, filtered
    by `BANKTASKS_PLUGINS` / `BANKTASKS_DISABLE`. With a list, exactly those: an
    installed plugin's entry-point name (`"acme"`), a `(name, module)` pair, or a
    module (named by `banktasks_name`, else the last part of `__name__`). The default
    plugins (`core.default_plugins`) come in both cases unless `BANKTASKS_DISABLE`
    names them. The new app becomes Celery's current and default app.
    """
    settings = settings or load_settings()
    warn_about_opt_outs(settings)
    plugin_set = build_plugin_set(
        allow=settings.banktasks_plugins, deny=settings.banktasks_disable, plugins=plugins
    )
    plugin_settings = _plugin_settings(plugin_set, settings)

    app = BanktasksCelery("banktasks", set_as_current=True)
    app.set_default()  # threads other than the creator's (threads a plugin starts) see it too
    if settings.redis_url:
        broker_url = settings.redis_url
    else:
        app.broker = plugin_set.pm.hook.register_broker(settings=settings)
        if app.broker is None:
            raise ConfigError(
                "REDIS_URL is not set and no plugin runs a broker (the default `broker` plugin "
                "is disabled?): set REDIS_URL=redis://[:password@]host:6379/0"
            )
        broker_url = app.broker.url
    make_private(settings.var_dir)  # a var dir left 0755 by an older version
    app.runtime = _runtime(settings, plugin_set, plugin_settings)

    specs = _bind_tasks(app, plugin_set)
    app.runtime.tasks = specs
    routes = {name: app.tasks[name].route_queue for name in specs}
    queues = sorted(set(routes.values()) | {DEFAULT_QUEUE})
    app.conf.update(
        broker_url=broker_url,
        result_backend=broker_url,
        accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        result_accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        result_expires=settings.result_expires_seconds,
        result_extended=True,  # name, worker, retries, queue; arguments: see _get_backend
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        # Task events cost ~40% of a worker's throughput; Flower switches them on in
        # running workers by itself. BANKTASKS_TASK_EVENTS=true sends them always.
        worker_send_task_events=settings.banktasks_task_events,
        task_send_sent_event=settings.banktasks_task_events,
        task_default_queue=DEFAULT_QUEUE,
        task_queues=[Queue(q) for q in queues],
        task_routes={name: _route(queue, specs[name]) for name, queue in routes.items()},
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(
            _visibility_timeout(
                specs,
                {name: app.tasks[name].time_limit for name in specs},
                settings.broker_visibility_timeout,
            )
        ),
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
        # A result stored while the broker restarts is retried (30 times, waits up to 10 s:
        # a few minutes) instead of turning a task that did its work into a failure.
        result_backend_always_retry=True,
        result_backend_max_retries=30,
        beat_schedule=_beat_schedule(plugin_set, plugin_settings),
        beat_schedule_filename=str(settings.var_dir / "celerybeat-schedule"),
        # RedBeat keeps the schedule in Redis behind a lock: a second beat started by
        # mistake waits for the lock instead of sending every periodic task twice.
        beat_scheduler="redbeat.RedBeatScheduler",
        # the password goes in the options, which Celery masks on Flower's worker pages
        # (it masks broker_url and result_backend, not a redbeat_redis_url)
        **_redbeat_connection(broker_url),
        redbeat_key_prefix="banktasks:beat",
        redbeat_lock_timeout=BEAT_LOCK_TIMEOUT,
        beat_max_loop_interval=BEAT_LOCK_TIMEOUT // 6,
    )
    _connect_signals(app)
    install_poison_guard(app)  # poison messages are set aside once, see core.poison
    plugin_set.pm.hook.configure_app(app=app, settings=settings)
    return app


def _connect_signals(app: BanktasksCelery) -> None:
    """Connect this app's Celery signal handlers; each acts only for this app.

    The handlers are kept on the app and connected weakly: they go with the app.
    """

    def setup_logging(loglevel: Any = None, **_: Any) -> None:
        # Celery calls this instead of configuring its own logging (not per app).
        if _is_current(app):
            configure_logging(settings.log_format, loglevel or settings.log_level)

    def start_broker(sender: Any = None, instance: Any = None, **_: Any) -> None:
        # workers (celeryd_init: instance=the worker) and beat (sender=the service) need
        # the broker before anything else (RedBeat's lock, for one)
        if getattr(instance, "app", None) is app or getattr(sender, "app", None) is app:
            app.ensure_broker()

    def check_mapping_at_start(instance: Any = None, **_: Any) -> None:
        # a worker whose DATA_MAPPING does not fit the bank's tables stops with one line
        if getattr(instance, "app", None) is app:
            try:
                check_data_mapping(app.runtime)
            except ConfigError as exc:
                print(f"banktasks: configuration error: {exc}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None

    def task_failed(
        sender: Any = None, task_id: Any = None, exception: Any = None, kwargs: Any = None, **_: Any
    ) -> None:
        if isinstance(sender, BanktasksTask) and sender.app is app and task_id and exception:
            # each listener on its own: one that raises is logged and the others still run
            app.runtime.plugins.call_each(
                "on_task_failed",
                task=sender,
                task_id=task_id,
                exception=exception,
                kwargs=kwargs or {},
            )

    def stamp_sent_at(sender: Any = None, headers: Any = None, **_: Any) -> None:
        # every message of this app's tasks (sent, retried, chained, from beat) says when
        # it was sent: queue wait and backlog age are measured from it
        if isinstance(headers, dict) and isinstance(app.tasks.get(sender), BanktasksTask):
            headers[SENT_AT_HEADER] = time.time()

    frozen = False

    def freeze_before_first_fork(**_: Any) -> None:
        # Celery collects garbage before forking each pool process (see core.startup)
        nonlocal frozen
        if _is_current(app) and not frozen:
            freeze_before_fork()
            frozen = True

    def fresh_connections_after_fork(**_: Any) -> None:
        # a forked worker child must not share database connections with its parent
        if _is_current(app):
            app.runtime.db.dispose()
            if app.runtime.data_db is not None:
                app.runtime.data_db.dispose()

    settings = app.runtime.settings
    receivers = [
        (signals.setup_logging, setup_logging),
        (signals.celeryd_init, start_broker),
        (signals.celeryd_init, check_mapping_at_start),
        (signals.beat_init, start_broker),
        (signals.task_failure, task_failed),
        (signals.before_task_publish, stamp_sent_at),
        (signals.worker_before_create_process, freeze_before_first_fork),
        (signals.worker_process_init, fresh_connections_after_fork),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=True)
    app.__dict__["_banktasks_receivers"] = receivers  # keeps the weak receivers alive


def _is_current(app: Celery) -> bool:
    from celery import current_app

    return current_app._get_current_object() is app
