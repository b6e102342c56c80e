"""``python -m harness`` is the ``rnnbench`` command."""

from harness.cli import main

raise SystemExit(main())
