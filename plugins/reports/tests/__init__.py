"""Tests of the reports plugin."""
