"""``python -m hjepa_watch``: the same as the ``hjepa-watch`` command."""

from hjepa_watch.cli import main

raise SystemExit(main())
