"""The generated reference pages: hooks, settings, CLI and import contracts.

An MkDocs hook module (`hooks:` in `mkdocs.yml`): `on_page_markdown` replaces the
markers `<!-- generated: hooks -->`, `<!-- generated: settings -->`,
`<!-- generated: cli -->` and `<!-- generated: contracts -->` with Markdown built
from the installed code at build time, so the reference cannot drift from it.
`tests/test_docs.py` imports the same collectors (`hook_docs`, `setting_docs`,
`command_docs`) to fail on a hook, setting or command without documentation.

What "installed" means: the core, its default plugins and every plugin of the
`banktasks` entry-point group, all of them, whatever `BANKTASKS_PLUGINS` says.
"""

from __future__ import annotations

import copy
import enum
import inspect
import itertools
import re
import tomllib
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

import click
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- generated: (\w+) -->")
CLI_WIDTH = 96


@dataclass(frozen=True)
class HookDoc:
    """One hookspec: who owns it, how it is called, what it says."""

    owner: str
    module: str
    name: str
    signature: str
    doc: str
    options: tuple[str, ...]
    implemented_by: tuple[str, ...]


@dataclass(frozen=True)
class SettingDoc:
    """One settings field as an operator sets it."""

    owner: str
    model: str
    field: str
    variables: tuple[str, ...]
    toml: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class CommandDoc:
    """One `banktasks` command or subcommand with its `--help` text."""

    owner: str
    path: str
    summary: str
    help: str


def all_plugins() -> Any:
    """A `PluginSet` of the default plugins and every installed plugin (env ignored)."""
    from core.plugins import build_plugin_set

    return build_plugin_set(allow=None, deny=None, plugins=None)


def _first_paragraph(text: str | None) -> str:
    return inspect.cleandoc(text or "").split("\n\n", 1)[0].replace("\n", " ")


def escape_html(text: str) -> str:
    """Escape `<` and `>` outside code, so `<BANKTASKS_VAR_DIR>` is not taken for a tag."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            parts = line.split("`")
            for i in range(0, len(parts), 2):  # even parts are outside code spans
                parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
            line = "`".join(parts)
        out.append(line)
    return "\n".join(out)


# ----------------------------------------------------------------------------------- hooks


def _annotation(value: Any) -> str:
    if isinstance(value, str):
        return value
    return inspect.formatannotation(value)


def hook_signature(function: Any) -> str:
    """`name(arg: type, …) -> type`, with the string annotations unquoted."""
    sig = inspect.signature(function)
    params = []
    for param in sig.parameters.values():
        text = param.name
        if param.annotation is not param.empty:
            text += f": {_annotation(param.annotation)}"
        params.append(text)
    returns = ""
    if sig.return_annotation is not sig.empty:
        returns = f" -> {_annotation(sig.return_annotation)}"
    return f"{function.__name__}({', '.join(params)}){returns}"


def _owned_hooks(plugin_set: Any) -> dict[str, str]:
    """Hook name → the plugin whose `register_hookspecs` adds it (core hooks: "core")."""
    from core.plugins import new_plugin_manager

    core_hooks = set(_hook_names(new_plugin_manager()))
    owners = dict.fromkeys(core_hooks, "core")
    caller = plugin_set.pm.hook.register_hookspecs
    for impl in reversed(caller.get_hookimpls()):
        pm = new_plugin_manager()
        impl.function(**{name: pm for name in impl.argnames})
        for name in _hook_names(pm):
            owners.setdefault(name, impl.plugin_name)
    return owners


def _hook_names(pm: Any) -> list[str]:
    return [
        name
        for name, caller in vars(pm.hook).items()
        if not name.startswith("_") and getattr(caller, "spec", None) is not None
    ]


def hook_docs(plugin_set: Any = None) -> list[HookDoc]:
    """Every hookspec of the core and of the installed plugins, core first."""
    plugin_set = plugin_set or all_plugins()
    owners = _owned_hooks(plugin_set)
    order = ["core", *plugin_set.infos]
    docs = []
    for name, owner in owners.items():
        caller = getattr(plugin_set.pm.hook, name)
        spec = caller.spec
        options = tuple(key for key in ("firstresult", "historic") if spec.opts.get(key))
        docs.append(
            HookDoc(
                owner=owner,
                module=spec.namespace.__name__,
                name=name,
                signature=hook_signature(spec.function),
                doc=inspect.getdoc(spec.function) or "",
                options=options,
                implemented_by=tuple(sorted({i.plugin_name for i in caller.get_hookimpls()})),
            )
        )
    return sorted(docs, key=lambda d: (order.index(d.owner), d.name))


HOOK_OPTIONS = {
    "firstresult": "the first implementation that returns something other than None wins.",
    "historic": "a plugin registered later is still called with the first call's arguments.",
}


def render_hooks(docs: list[HookDoc]) -> str:
    """The hooks reference: one section per owner, one entry per hook."""
    out: list[str] = []
    for owner, group in itertools.groupby(docs, key=lambda d: d.owner):
        hooks = list(group)
        title = "Core hooks" if owner == "core" else f"Hooks of the `{owner}` plugin"
        out += [f"## {title}", "", f"Specified in `{hooks[0].module}`.", ""]
        for doc in hooks:
            out += [f"### `{doc.name}`", "", "```python", doc.signature, "```", ""]
            for option in doc.options:
                out += [f"*{option}*: {HOOK_OPTIONS[option]}", ""]
            out += [escape_html(doc.doc) or "**(no docstring)**", ""]
            users = ", ".join(f"`{p}`" for p in doc.implemented_by) or "none yet"
            out += [f"Implemented by: {users}.", ""]
    return "\n".join(out)


# -------------------------------------------------------------------------------- settings


_CONSTRAINTS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "min_length": "length ≥"}


def _type_words(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (UnionType, typing.Union):
        parts = [_type_words(a) for a in typing.get_args(tp) if a is not NoneType]
        return " or ".join(parts)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin is list:
        return "list"
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return "one of " + ", ".join(f"`{m.value}`" for m in tp)
        return {
            "Path": "path",
            "Decimal": "decimal",
            "SecretStr": "secret",
            "bool": "true/false",
        }.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def field_type(field: FieldInfo) -> str:
    """A readable type with its bounds: `int, > 0, ≤ 65535`, `comma list`, `path`."""
    words = _type_words(field.annotation)
    comma = any(getattr(m, "__name__", "") == "NoDecode" for m in field.metadata)
    if comma:
        words = "comma list"
    bounds = []
    for item in field.metadata:
        for attr, sign in _CONSTRAINTS.items():
            value = getattr(item, attr, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
    return ", ".join([words, *bounds])


def field_default(field: FieldInfo) -> str:
    """The default as an operator would write it (`unset` for None)."""
    if field.default_factory is not None:
        return f"`{field.default_factory()!s}`"
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        value = value.value
    return f"`{value!s}`"


def env_names(field_name: str, field: FieldInfo, prefix: str) -> tuple[str, ...]:
    """The environment variables a field is read from (aliases win over the prefix)."""
    alias = field.validation_alias
    choices = getattr(alias, "choices", None) or ([alias] if isinstance(alias, str) else [])
    names = [str(c).upper() for c in choices if isinstance(c, str)]
    return tuple(names) or (f"{prefix}{field_name}".upper(),)


def _model_docs(owner: str, model: type, prefix: str, toml: str, skip: set[str]) -> list[Any]:
    return [
        SettingDoc(
            owner=owner,
            model=f"{model.__module__}.{model.__qualname__}",
            field=name,
            variables=env_names(name, field, prefix),
            toml=f"{toml}{name}",
            type=field_type(field),
            default=field_default(field),
            description=(field.description or "").strip(),
        )
        for name, field in model.model_fields.items()
        if name not in skip
    ]


def setting_docs(plugin_set: Any = None) -> list[SettingDoc]:
    """Core settings, then each plugin's model (default plugins included), in plugin order.

    `schedule` (`<PLUGIN>_SCHEDULE`, from `core.PluginSettings`) is listed for the
    plugins that implement `register_schedule`, the ones it applies to.
    """
    from core.settings import PluginSettings, Settings

    plugin_set = plugin_set or all_plugins()
    docs = _model_docs("core", Settings, "", "", set())
    models = {plugin: (plugin, PluginSettings) for plugin in plugin_set.enabled()}
    for plugin, (name, model) in plugin_set.calls("register_settings"):
        models[plugin] = (name, model)  # `name` is the prefix and TOML table the core uses
    scheduled = {i.plugin_name for i in plugin_set.pm.hook.register_schedule.get_hookimpls()}
    for plugin, (name, model) in models.items():
        skip = set() if plugin in scheduled else set(PluginSettings.model_fields)
        docs += _model_docs(plugin, model, f"{name}_", f"[plugins.{name}] ", skip)
    return docs


def _cell(text: str) -> str:
    """A table cell: one line, `|` escaped outside code spans (inside them it is kept)."""
    parts = text.replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("|", "\\|")
    return "`".join(parts)


def render_settings(docs: list[SettingDoc]) -> str:
    """The settings reference: one table per owner."""
    out: list[str] = []
    for owner, group in itertools.groupby(docs, key=lambda d: d.owner):
        fields = list(group)
        if owner == "core":
            out += ["## Core settings", "", f"`{fields[0].model}`; TOML: top-level keys.", ""]
        else:
            out += [f"## `{owner}`", "", f"`{fields[0].model}`.", ""]
        out += ["| variable | TOML key | type | default | description |", "|---|---|---|---|---|"]
        for doc in fields:
            variables = "<br>".join(f"`{v}`" for v in doc.variables)
            described = escape_html(doc.description) or "**?**"
            cells = [variables, f"`{doc.toml}`", escape_html(doc.type), doc.default, described]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------------- CLI


def full_cli(plugin_set: Any = None) -> tuple[click.Group, dict[str, str]]:
    """A copy of the `banktasks` group with every plugin's commands; path → owning plugin."""
    from core.cli import cli

    plugin_set = plugin_set or all_plugins()
    group = copy.deepcopy(cli)
    owners = dict.fromkeys((path for path, _ in _walk(group)), "core")
    for impl in reversed(plugin_set.pm.hook.register_commands.get_hookimpls()):
        impl.function(**{name: group for name in impl.argnames})
        for path, _ in _walk(group):
            owners.setdefault(path, impl.plugin_name)
    return group, owners


def _walk(command: click.Command, path: str = "banktasks") -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if not sub.hidden:
                yield from _walk(sub, f"{path} {name}")


def _help_text(root: click.Group, path: str) -> str:
    names = path.split()
    settings = {**root.context_settings, "terminal_width": CLI_WIDTH}
    ctx = click.Context(root, info_name=names[0], max_content_width=CLI_WIDTH, **settings)
    command: click.Command = root
    for name in names[1:]:
        assert isinstance(command, click.Group)
        command = command.commands[name]
        ctx = click.Context(command, info_name=name, parent=ctx)
    return command.get_help(ctx)


def command_docs(plugin_set: Any = None) -> list[CommandDoc]:
    """Every `banktasks` command and subcommand, core and plugins', in tree order."""
    root, owners = full_cli(plugin_set)
    return [
        CommandDoc(
            owner=owners[path],
            path=path,
            summary=(command.short_help or _first_paragraph(command.help)).strip(),
            help=_help_text(root, path),
        )
        for path, command in _walk(root)
    ]


def render_cli(docs: list[CommandDoc]) -> str:
    """The CLI reference: each command's `--help`, with the plugin that adds it."""
    out: list[str] = []
    for doc in docs:
        level = "#" * min(4, 1 + len(doc.path.split()))
        added = "" if doc.owner == "core" else f" (added by the `{doc.owner}` plugin)"
        out += [f"{level} `{doc.path}`{added}", "", "```text", doc.help, "```", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------- contracts


def render_contracts(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The import-linter contracts of `pyproject.toml`, as `make lint` checks them."""
    config = tomllib.loads(pyproject.read_text())
    contracts = config.get("tool", {}).get("importlinter", {}).get("contracts", [])
    out: list[str] = []
    for contract in contracts:
        out += [f"**{contract['name']}** ({contract['type']})", ""]
        if contract["type"] == "layers":
            out += ["```text", *contract["layers"], "```", ""]
            out += [
                "Each line imports only from the lines below it; modules on one line "
                "(separated by `:`) do not import each other.",
                "",
            ]
        elif contract["type"] == "independence":
            out += [", ".join(f"`{m}`" for m in contract["modules"]), ""]
        elif contract["type"] == "forbidden":
            sources = ", ".join(f"`{m}`" for m in contract["source_modules"])
            forbidden = ", ".join(f"`{m}`" for m in contract["forbidden_modules"])
            out += [f"{sources} may not import {forbidden}.", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- MkDocs hook


GENERATORS = {
    "hooks": lambda: render_hooks(hook_docs()),
    "settings": lambda: render_settings(setting_docs()),
    "cli": lambda: render_cli(command_docs()),
    "contracts": render_contracts,
}


def generate(markdown: str) -> str:
    """Replace each `<!-- generated: NAME -->` marker with its generated Markdown."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown marker {match.group(0)}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: fill in the generated sections of a page."""
    return generate(markdown)
