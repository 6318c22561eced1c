"""Root conftest. The testing kit's fixtures come from its pytest11 entry point
(`banktasks_testing.plugin`), as they do for any plugin author; pytester (opt-in, as
in pytest itself) runs the kit's own tests in fresh pytest sessions."""

pytest_plugins = ["pytester"]
