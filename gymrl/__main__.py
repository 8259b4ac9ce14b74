"""``python -m gymrl``: the same as the ``gymrl`` command."""

from gymrl.cli import main

raise SystemExit(main())
