"""`tmesh-cli`: the command line, the only layer that knows about flags, exit codes and the demo."""

from tmesh.cli.main import main

__all__ = ["main"]
