"""Build the plugin manager: load `banktasks` entry points, apply allow/deny lists.

`BANKTASKS_PLUGINS=fraud,health` loads only those; `BANKTASKS_DISABLE=export`
blocks one (pluggy's `set_blocked`). A blocked plugin is never imported.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from core import hookspecs
from core.errors import ConfigError
from core.markers import PROJECT

ENTRY_POINT_GROUP = "banktasks"


@dataclass(frozen=True)
class PluginInfo:
    """What `banktasks plugins` shows about one plugin."""

    name: str
    enabled: bool
    source: str
    version: str | None
    module: str | None = None
    hooks: tuple[str, ...] = field(default_factory=tuple)


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
