"""Subcommands of the `ghpo` CLI, one module each (see ghpo.cli)."""
