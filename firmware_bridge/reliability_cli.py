"""Subcommands of this stage (registered by tinyexit.cli)."""


def register(sub) -> None:
    """Add this stage's subcommands to the `tinyexit` parser."""
