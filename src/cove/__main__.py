"""``python -m cove``: the ``cove`` command."""

from cove.cli import run_command

run_command()
