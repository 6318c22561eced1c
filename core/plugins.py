"""Build the plugin manager: default plugins, `banktasks` entry points, allow/deny lists.

`BANKTASKS_PLUGINS=acme,other` loads only those installed plugins;
`BANKTASKS_DISABLE=acme` blocks one (pluggy's `set_blocked`), a default
plugin included (`BANKTASKS_DISABLE=deadletters`). A blocked plugin is never imported.
The default plugins are named here by module path only: they are imported when
an app is built, never by this module (the way llm and pytest load their built-ins).
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
from core.startup import frozen_imports

ENTRY_POINT_GROUP = "banktasks"
DEFAULT_PLUGINS = {
    "broker": "core.default_plugins.broker",
    "deadletters": "core.default_plugins.deadletters",
    "flower": "core.default_plugins.flower",
    "demo": "core.default_plugins.demo",
    "schedules": "core.default_plugins.schedules",
    "metrics": "core.default_plugins.metrics",
    "delivery": "core.default_plugins.delivery",
}
log = get_logger(__name__)

PluginSpec = str | object | tuple[str, object]
"""What `create_app(plugins=[...])` takes: an installed plugin's entry-point name,
a module or object (named by its `banktasks_name`, else its `__name__`'s last
part), or an explicit `(name, module)` pair."""


@dataclass(frozen=True)
class Contribution:
    """One object a plugin returned from a `register_*` hook, with the plugin's name."""

    plugin: str
    name: str
    obj: Any


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
        An error propagates (use `call_each` to keep going).
        """
        results = [
            (impl.plugin_name, impl.function(*[kwargs[name] for name in impl.argnames]))
            for impl in reversed(self._impls(hook_name))
        ]
        return [(plugin, result) for plugin, result in results if result is not None]

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
        return {c.name: c.obj for c in self.contributions(hook_name, what, methods, check)}

    def contributions(
        self,
        hook_name: str,
        what: str,
        methods: tuple[str, ...] = (),
        check: Callable[[str, Any], None] | None = None,
    ) -> list[Contribution]:
        """Like `collect_named`, keeping which plugin registered each object (a rule or a
        check gets its own plugin's settings from that)."""
        found: dict[str, Contribution] = {}
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
                found[name] = Contribution(plugin, name, obj)
                owners[name] = plugin
        return list(found.values())


def new_plugin_manager() -> pluggy.PluginManager:
    """An empty plugin manager that knows the core hookspecs."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def plugin_name_of(obj: object) -> str:
    """The name a directly registered plugin object goes by.

    A module or object may say `banktasks_name = "acme"` (an object may also say
    `name = "acme"`); otherwise the last part of its `__name__` is used
    (`acme_rules` → `acme_rules`). Pass `("acme", module)` to name it in the call.
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


def _load(name: str, target: Any) -> Any:
    """The plugin object: an entry point or a default plugin's module path is imported."""
    if isinstance(target, importlib.metadata.EntryPoint):
        load, where = target.load, f"entry point {target.value}"
    elif isinstance(target, str):
        load, where = (lambda: importlib.import_module(target)), f"module {target}"
    else:
        return target
    try:
        with frozen_imports():  # a plugin's modules live as long as the process
            return load()
    except Exception as exc:
        raise ConfigError(
            f"plugin {name!r} ({where}) failed to load: "
            f"{type(exc).__name__}: {exc}; fix or uninstall it, or set BANKTASKS_DISABLE={name}"
        ) from exc


def _named(spec: PluginSpec, eps: dict[str, importlib.metadata.EntryPoint]) -> tuple[str, Any]:
    """`(name, target)` for one item of `plugins=[...]` (target: an object or an entry point)."""
    if isinstance(spec, str):
        if spec not in eps:
            raise ConfigError(
                f"plugins=[{spec!r}]: no installed plugin (entry point group "
                f"{ENTRY_POINT_GROUP!r}) has that name; installed: {', '.join(sorted(eps)) or '-'}"
            )
        return spec, eps[spec]
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return spec[0], spec[1]
    return plugin_name_of(spec), spec


def build_plugin_set(
    allow: Sequence[str] | None = None,
    deny: Sequence[str] | None = None,
    plugins: Iterable[PluginSpec] | None = None,
    defaults: dict[str, str] | None = None,
) -> PluginSet:
    """Create the plugin manager.

    With `plugins` given, exactly those are registered (tests do this): entry-point
    names, `(name, module)` pairs or objects; otherwise every installed `banktasks`
    entry point is. The default plugins (`defaults`, by module path) are registered
    first in both cases, and only `deny` blocks them. Unknown names in the allow or
    deny list are a ConfigError.
    """
    defaults = DEFAULT_PLUGINS if defaults is None else defaults
    pm = new_plugin_manager()
    infos: dict[str, PluginInfo] = {}
    eps = installed_entry_points()
    candidates: dict[str, tuple[str, str | None, Any]] = {
        name: ("default plugin", None, path) for name, path in defaults.items()
    }
    if plugins is not None:
        for spec in plugins:
            name, target = _named(spec, eps)
            if isinstance(target, importlib.metadata.EntryPoint):
                candidates[name] = (*_dist_of(target), target)
            else:
                candidates[name] = ("registered directly", None, target)
        eps = {name: ep for name, ep in eps.items() if name in candidates}
    else:
        for name, ep in eps.items():
            candidates[name] = (*_dist_of(ep), ep)

    known = set(candidates)
    for setting, names in (("BANKTASKS_PLUGINS", allow), ("BANKTASKS_DISABLE", deny)):
        unknown = sorted(set(names or ()) - known)
        if unknown:
            raise ConfigError(
                f"{setting}={','.join(names or ())}: unknown plugin(s) {', '.join(unknown)}; "
                f"installed plugins are: {', '.join(sorted(known)) or '(none)'}"
            )

    for name, (source, version, target) in candidates.items():
        selected = allow is None or name in allow or name in defaults
        if not selected or name in (deny or ()):
            pm.set_blocked(name)
            infos[name] = PluginInfo(name, False, source, version)
            continue
        obj = _load(name, target)
        pm.register(obj, name=name)
        infos[name] = PluginInfo(name, True, source, version, getattr(obj, "__name__", None))

    pm.hook.register_hookspecs(pm=pm)
    for name, info in list(infos.items()):
        if info.enabled:
            plugin = pm.get_plugin(name)
            hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
            infos[name] = PluginInfo(**{**info.__dict__, "hooks": hooks})
    return PluginSet(pm=pm, infos=infos, entry_points=eps)
