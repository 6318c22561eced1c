"""Tests of the health plugin."""
