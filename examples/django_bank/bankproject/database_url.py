"""DJANGO_DATABASE_URL -> Django's DATABASES entry, with urllib.parse only.

Accepted forms:

- `sqlite:////abs/path.db` (absolute path) or `sqlite:///rel/path.db` (relative to the
  current directory), as in SQLAlchemy;
- `postgresql://user:pass@host:port/dbname?sslmode=require` (also `postgres://` and
  SQLAlchemy's `postgresql+psycopg://`, so one URL may serve Django and banktasks).
  User and password are percent-decoded; query parameters become OPTIONS (libpq
  connection parameters). Django's postgresql backend uses psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg", "pgsql"})


def database_from_url(url: str) -> dict[str, Any]:
    """The `DATABASES["default"]` dict for `url`; ValueError for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise ValueError(
                f"DJANGO_DATABASE_URL={url!r}: expected sqlite:////absolute/path.db "
                "or sqlite:///relative/path.db"
            )
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(Path(unquote(parts.path[1:]))),
        }
    if scheme in POSTGRES_SCHEMES:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ValueError(f"DJANGO_DATABASE_URL={url!r}: the database name is missing")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": unquote(parts.hostname or ""),
            "PORT": str(parts.port or ""),
            "OPTIONS": dict(parse_qsl(parts.query)),
        }
    raise ValueError(
        f"DJANGO_DATABASE_URL={url!r}: unsupported scheme {parts.scheme!r} "
        "(expected sqlite or postgresql)"
    )
