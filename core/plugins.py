"""Build the plugin manager: load `banktasks` entry points, apply allow/deny lists.

`BANKTASKS_PLUGINS=fraud,health` loads only those; `BANKTASKS_DISABLE=export`
blocks one (pluggy's `set_blocked`). A blocked plugin is never imported.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from core import hookspecs
from core.errors import ConfigError
from core.logging import get_logger
from core.markers import PROJECT

ENTRY_POINT_GROUP = "banktasks"
log = get_logger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    """What `banktasks plugins` shows about one plugin."""

    name: str
    enabled: bool
    source: str
    version: str | None
    module: str | None = None
    hooks: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class HookOutcome:
    """What one plugin's implementation of a hook returned, or the error it raised."""

    plugin: str
    result: Any = None
    error: Exception | None = None


@dataclass
class PluginSet:
    """The plugin manager plus what is known about installed-but-disabled plugins."""

    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo]
    entry_points: dict[str, importlib.metadata.EntryPoint]

    def enabled(self) -> list[str]:
        """Names of the registered (enabled) plugins, in registration order."""
        return [name for name, info in self.infos.items() if info.enabled]

    def calls(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call one hook plugin by plugin and return `(plugin name, result)` pairs.

        Unlike `pm.hook.X()`, this keeps track of which plugin returned what; the
        core needs that to name tasks `<plugin>.<function>` and to route settings.
        """
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            return []
        results = []
        for impl in reversed(caller.get_hookimpls()):
            args = [kwargs[name] for name in impl.argnames]
            result = impl.function(*args)
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def _impls(self, hook_name: str) -> list[Any]:
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            return []
        return [i for i in caller.get_hookimpls() if not (i.hookwrapper or i.wrapper)]

    def call_each(self, hook_name: str, **kwargs: Any) -> list[HookOutcome]:
        """Call every implementation of a hook on its own, in pluggy's call order.

        An implementation that raises does not stop the others: its error is
        logged and returned in its HookOutcome. Use it for listeners (`on_*`)
        and contributions (`register_report_sections`) whose failure must stay local.
        """
        outcomes = []
        for impl in reversed(self._impls(hook_name)):
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception as exc:
                log.error(
                    "hook_failed",
                    hook=hook_name,
                    hook_plugin=impl.plugin_name,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=True,
                )
                outcomes.append(HookOutcome(impl.plugin_name, error=exc))
            else:
                outcomes.append(HookOutcome(impl.plugin_name, result))
        return outcomes

    def collect_named(
        self,
        hook_name: str,
        what: str,
        methods: tuple[str, ...] = (),
        check: Callable[[str, Any], None] | None = None,
    ) -> dict[str, Any]:
        """Objects returned by a `register_*` hook, by their `name`, in registration order.

        Each object needs a non-empty str `name` and the callable `methods`;
        `check(plugin, obj)` may add rules of the owning plugin. A broken object
        or a name registered twice is a ConfigError naming the plugin(s).
        """
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for impl in self._impls(hook_name):
            plugin = impl.plugin_name
            for obj in impl.function() or ():
                name = getattr(obj, "name", None)
                missing = [m for m in methods if not callable(getattr(obj, m, None))]
                if not isinstance(name, str) or not name or missing:
                    needs = ", ".join(["a `name`", *(f"{m}()" for m in methods)])
                    raise ConfigError(
                        f"plugin {plugin!r}: {hook_name}() returned {obj!r:.80}; "
                        f"a {what} needs {needs}"
                    )
                if check is not None:
                    check(plugin, obj)
                if name in found:
                    raise ConfigError(
                        f"{what} {name!r} is registered twice (by plugins {owners[name]!r} and "
                        f"{plugin!r}); disable one of them or rename it"
                    )
                found[name] = obj
                owners[name] = plugin
        return found


def new_plugin_manager() -> pluggy.PluginManager:
    """An empty plugin manager that knows the core hookspecs."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def plugin_name_of(obj: object) -> str:
    """The name a directly registered plugin object goes by.

    A module or object may say `name = "acme"`; otherwise the last part of its
    `__name__` is used (`plugins.fraud` → `fraud`).
    """
    explicit = getattr(obj, "banktasks_name", None) or (
        getattr(obj, "name", None) if not isinstance(obj, ModuleType) else None
    )
    if isinstance(explicit, str) and explicit:
        return explicit
    dotted = getattr(obj, "__name__", None) or type(obj).__name__
    return str(dotted).rsplit(".", 1)[-1]


def installed_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the `banktasks` group, by name (first one wins on duplicates)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "entry point", None
    return f"{dist.metadata['Name']} (entry point)", dist.version


def _load(name: str, ep: importlib.metadata.EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:
        raise ConfigError(
            f"plugin {name!r} (entry point {ep.value}) failed to load: "
            f"{type(exc).__name__}: {exc}; fix or uninstall it, or set BANKTASKS_DISABLE={name}"
        ) from exc


def build_plugin_set(
    allow: Sequence[str] | None = None,
    deny: Sequence[str] | None = None,
    plugins: Iterable[object] | None = None,
) -> PluginSet:
    """Create the plugin manager.

    With `plugins` given, exactly those objects are registered (tests do this);
    otherwise every installed `banktasks` entry point is, minus the blocked ones.
    Unknown names in the allow or deny list are a ConfigError.
    """
    pm = new_plugin_manager()
    infos: dict[str, PluginInfo] = {}
    eps: dict[str, importlib.metadata.EntryPoint] = {}

    if plugins is not None:
        candidates: dict[str, tuple[str, str | None, Any]] = {}
        for obj in plugins:
            candidates[plugin_name_of(obj)] = ("registered directly", None, obj)
    else:
        eps = installed_entry_points()
        candidates = {}
        for name, ep in eps.items():
            source, version = _dist_of(ep)
            candidates[name] = (source, version, ep)

    known = set(candidates)
    for setting, names in (("BANKTASKS_PLUGINS", allow), ("BANKTASKS_DISABLE", deny)):
        unknown = sorted(set(names or ()) - known)
        if unknown:
            raise ConfigError(
                f"{setting}={','.join(names or ())}: unknown plugin(s) {', '.join(unknown)}; "
                f"installed plugins are: {', '.join(sorted(known)) or '(none)'}"
            )

    for name, (source, version, target) in candidates.items():
        blocked = (allow is not None and name not in allow) or name in (deny or ())
        if blocked:
            pm.set_blocked(name)
            infos[name] = PluginInfo(name, False, source, version)
            continue
        obj = _load(name, target) if isinstance(target, importlib.metadata.EntryPoint) else target
        pm.register(obj, name=name)
        infos[name] = PluginInfo(name, True, source, version, getattr(obj, "__name__", None))

    pm.hook.register_hookspecs(pm=pm)
    for name, info in list(infos.items()):
        if info.enabled:
            plugin = pm.get_plugin(name)
            hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
            infos[name] = PluginInfo(**{**info.__dict__, "hooks": hooks})
    return PluginSet(pm=pm, infos=infos, entry_points=eps)
