"""Settings of the example bank, a small Django project whose tables banktasks reads.

The database comes from `DJANGO_DATABASE_URL` (`sqlite:////abs/path.db` or
`postgresql://user:pass@host:port/dbname`, see `bankproject.database_url`); unset, it is
the SQLite file `var/django.db` next to manage.py. Times are stored in UTC.
"""

from __future__ import annotations

import os
from pathlib import Path

from bankproject.database_url import database_from_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-example-bank-dev-only-never-use-in-production"
)
DEBUG = os.environ.get("DJANGO_DEBUG", "true").lower() in {"1", "true", "yes"}
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    # the project's former `core` app: module `bankcore`, label still `core`
    "bankcore.apps.CoreConfig",
    "banking",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "bankproject.urls"

DATABASES = {
    "default": database_from_url(
        os.environ.get("DJANGO_DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'django.db'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
