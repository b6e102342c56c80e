"""``python -m rnnbench`` is the ``rnnbench`` command."""

from rnnbench.harness.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
