"""The `banking` app: accounts and their transactions."""
