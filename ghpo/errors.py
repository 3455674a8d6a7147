"""The command line's one error type, importable by every command module at module level.

What it is for: a command raises `CliError` for a user error (a bad flag, a missing file, an invalid
config); `ghpo.cli.main` prints it as one line and exits with code 2. It lives apart from `ghpo.cli`,
which imports every command module, so the commands need not import the CLI back.

What it deliberately does not do: map service errors (ghpo.shared.errors has those) or print anything.
"""

from __future__ import annotations


class CliError(Exception):
    """A user error on the command line: printed as one line, exit code 2."""
