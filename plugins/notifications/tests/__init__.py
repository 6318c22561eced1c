"""Tests of the notifications plugin (a package: `plugins.notifications.tests`)."""
