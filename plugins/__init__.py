"""The built-in banktasks plugins; each registers through the `banktasks` entry points."""
