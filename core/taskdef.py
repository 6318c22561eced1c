"""The `@task` decorator: a typed function, its queue, its retry policy and validation.

A `TaskDef` is what a plugin returns from `register_tasks()`. The core binds it
into the Celery app as `<plugin>.<function>`; arguments are validated from the
type hints in the caller of `.delay()` and again in the worker.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from core.errors import NoAppError, TaskArgumentError, UnknownTaskError
from core.ratelimit import SubmitLimit
from core.resultcache import ttl_seconds
from core.retry import NO_RETRY, RetryPolicy

_MAX_SHOWN = 80


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def format_validation_error(task_name: str, exc: ValidationError) -> str:
    """One readable line per bad argument: name, value given, what was expected."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "extra_forbidden":
            parts.append(f"unexpected argument {where!r}")
        elif err["type"] == "missing":
            parts.append(f"missing required argument {where!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"argument {where!r}={_shown(err.get('input'))}: {msg}")
    return f"{task_name}: " + "; ".join(parts)


class TaskDef:
    """A plugin task before (and after) it is bound into a Celery app."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
        acks_late: bool = True,
        example: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
        submit_limit: SubmitLimit | None = None,
        check: Callable[..., None] | None = None,
        options: dict[str, Any] | None = None,
        cache_ttl: int | timedelta | None = None,
        cache_version: str = "1",
    ) -> None:
        self.fn = fn
        self.__name__ = fn.__name__
        self.__qualname__ = getattr(fn, "__qualname__", fn.__name__)
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self.queue = queue
        self.retry = retry or NO_RETRY
        self.acks_late = acks_late
        self.example = example
        self.submit_limit = submit_limit
        self.check = check
        self.options = dict(options or {})
        self.cache_ttl = ttl_seconds(fn.__qualname__, cache_ttl)
        self.cache_version = str(cache_version)
        self.signature = inspect.signature(fn)
        self.args_model = self._build_args_model()
        self.name: str | None = None  # "<plugin>.<function>", set when bound

    def _build_args_model(self) -> type[BaseModel]:
        hints = typing.get_type_hints(self.fn, include_extras=True)
        fields: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(
                    f"@task {self.fn.__qualname__}: *args/**kwargs are not allowed; "
                    "declare every argument with a type hint"
                )
            if param.name not in hints:
                raise TypeError(
                    f"@task {self.fn.__qualname__}: argument {param.name!r} needs a type hint"
                )
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hints[param.name], default)
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
        return create_model(f"{self.fn.__name__}_args", __config__=config, **fields)

    @property
    def display_name(self) -> str:
        """The Celery task name when bound, else the function's name."""
        return self.name or self.fn.__name__

    def validate(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> BaseModel:
        """Check arguments against the type hints; raise TaskArgumentError if they don't fit."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:  # (cut: an argument's name may be a megabyte long)
            raise TaskArgumentError(f"{self.display_name}: {exc!s:.300}") from None
        try:
            model = self.args_model.model_validate(dict(bound.arguments))
        except ValidationError as exc:
            raise TaskArgumentError(format_validation_error(self.display_name, exc)) from None
        if self.check is not None:
            try:
                self.check(**self.call_kwargs(model))
            except TaskArgumentError:
                raise
            except ValueError as exc:
                raise TaskArgumentError(f"{self.display_name}: {exc}") from None
        return model

    def message_kwargs(self, args: Any, kwargs: Any) -> dict[str, Any]:
        """Validate and return the JSON-safe kwargs to put on the wire (only those given)."""
        model = self.validate(tuple(args or ()), dict(kwargs or {}))
        return model.model_dump(mode="json", include=set(model.model_fields_set))

    def call_kwargs(self, model: BaseModel) -> dict[str, Any]:
        """Python values (dates, Decimals…) to call the function with, defaults filled in."""
        return {name: getattr(model, name) for name in type(model).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task in this process (validated), without the broker."""
        return self.fn(**self.call_kwargs(self.validate(args, kwargs)))

    # Celery-style calling, forwarded to the task bound in the current app (found through
    # Celery's current_app, as shared_task does; no app is ever built here).
    def bound(self) -> Any:
        """The Celery task this definition is bound to in the current app."""
        from celery import current_app

        app = current_app._get_current_object()
        if getattr(app, "runtime", None) is None:
            raise NoAppError(
                f"{self.display_name}: no banktasks app in this process to send it with; "
                "import the default one (`from core.celery import app`) or build one with "
                "`core.create_app()` first"
            )
        if self.name is None or self.name not in app.tasks:
            raise UnknownTaskError(
                f"task {self.fn.__name__!r} is not registered in the app: is its plugin "
                "enabled (BANKTASKS_PLUGINS / BANKTASKS_DISABLE)?"
            )
        return app.tasks[self.name]

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send the task to its queue (like Celery's `Task.delay`)."""
        return self.bound().delay(*args, **kwargs)

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Send the task with Celery options such as `countdown` or `task_id`."""
        return self.bound().apply_async(args=args, kwargs=kwargs, **options)

    def delay_on_commit(self, session: Any, *args: Any, **kwargs: Any) -> str:
        """Send the task when `session`'s transaction commits (nothing on a rollback); return
        its task id. Written to the outbox in that transaction (see
        `BanktasksTask.delay_on_commit`)."""
        return str(self.bound().delay_on_commit(session, *args, **kwargs))

    def apply_async_on_commit(
        self, session: Any, args: Any = None, kwargs: Any = None, **options: Any
    ) -> str:
        """`delay_on_commit` with Celery options (task_id, countdown, eta, expires, priority,
        queue, time_limit, soft_time_limit)."""
        return str(self.bound().apply_async_on_commit(session, args, kwargs, **options))

    def delay_many(
        self, items: Iterable[Mapping[str, Any]], *, batch_size: int = 1000, **options: Any
    ) -> list[str]:
        """Send one task per item (a dict of keyword arguments) in pipelined batches;
        return the task ids in item order. All items are validated first: one bad item
        sends nothing (see `BanktasksTask.delay_many`)."""
        return list(self.bound().delay_many(items, batch_size=batch_size, **options))

    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A Celery signature of the bound task (for chains, groups and chords).

        In a chain it receives the previous task's result as its first argument.
        """
        return self.bound().s(*args, **kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Any:
        """An immutable signature: in a chain it ignores the previous task's result."""
        return self.bound().si(*args, **kwargs)

    def example_kwargs(self) -> dict[str, Any]:
        """Arguments `banktasks demo` sends this task with (none unless declared)."""
        example = self.example() if callable(self.example) else self.example
        return dict(example or {})

    def __repr__(self) -> str:
        return f"<TaskDef {self.display_name}>"


def task(
    fn: Callable[..., Any] | None = None,
    *,
    queue: str | None = None,
    retry: RetryPolicy | None = None,
    acks_late: bool = True,
    example: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    submit_limit: SubmitLimit | None = None,
    check: Callable[..., None] | None = None,
    cache_ttl: int | timedelta | None = None,
    cache_version: str = "1",
    **celery_options: Any,
) -> Any:
    """Declare a plugin task.

    `queue` defaults to the plugin's name; `retry` is a RetryPolicy (default: no
    retry). Effectful tasks keep `acks_late=True` (the default): the message is
    acknowledged only after the task finished, and redelivered if the worker
    dies. `example` gives the arguments `banktasks demo` sends (a dict, or a
    function returning one). `submit_limit` caps submissions per argument value
    across all processes (see core.ratelimit). `check(**arguments)` validates
    arguments together (e.g. end after start) in the caller and in the worker:
    a ValueError it raises becomes a TaskArgumentError. `cache_ttl` (seconds or a
    timedelta) makes identical arguments within it return the stored result without
    running again — for tasks without effects only; bump `cache_version` when the
    result changes meaning (see core.resultcache). Other keyword arguments
    (`track_started=True` for a long task whose running state should show as STARTED,
    `time_limit`, `soft_time_limit`, …) go to Celery.
    """

    def wrap(func: Callable[..., Any]) -> TaskDef:
        return TaskDef(
            func,
            queue=queue,
            retry=retry,
            acks_late=acks_late,
            example=example,
            submit_limit=submit_limit,
            check=check,
            options=celery_options,
            cache_ttl=cache_ttl,
            cache_version=cache_version,
        )

    return wrap(fn) if fn is not None else wrap
