"""Tests of the export plugin."""
