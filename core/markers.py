"""The pluggy markers of the `banktasks` project (shared by core and plugin hookspecs)."""

import pluggy

PROJECT = "banktasks"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
