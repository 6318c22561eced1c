"""Exceptions the core raises; each message says what was wrong, where, and what to do."""

from __future__ import annotations


class BanktasksError(Exception):
    """Base class of every error banktasks raises on purpose."""


class ConfigError(BanktasksError):
    """A setting is wrong. The message is one line: setting, bad value, what was expected."""


class TaskArgumentError(BanktasksError, ValueError):
    """A task was called with arguments that do not match its signature. Never retried."""


class PluginDisabledError(BanktasksError, ImportError):
    """A task or object belongs to a plugin that is installed but disabled."""


class UnknownTaskError(BanktasksError, LookupError):
    """No enabled plugin registers a task of that name."""


class NoAppError(BanktasksError, RuntimeError):
    """Code that needs a banktasks app ran in a process that has none."""
