"""Root conftest: every test (core and plugins) gets the banktasks fixtures."""

pytest_plugins = ["core.testing"]
