"""The core's Alembic version chain (branch `core`): `versions/`, run by `core.migrate`."""
