"""How the fraud plugin's commands refuse bad input: exit status 2 and one line."""

from __future__ import annotations

import click


class BadInput(click.ClickException):
    """Bad input to a command: `Error: <what was wrong and what to do>` on stderr, exit
    status 2 (as click's own usage errors), without the usage text; nothing was changed."""

    exit_code = 2
