"""Tests of the fraud plugin (a package: `from .helpers import ...`)."""
