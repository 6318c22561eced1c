"""The bank's `core` app (branches), as module `bankcore`: see `bankcore.apps`."""
