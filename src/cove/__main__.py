"""``python -m cove``: the ``cove`` command."""

if __name__ == "__main__":  # not when a tool imports every module (pkgutil.walk_packages)
    from cove.cli import run_command

    run_command()
