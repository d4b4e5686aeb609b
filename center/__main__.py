"""`python -m center`: the same as `loyalty-center`."""

from center.cli import main

raise SystemExit(main())
