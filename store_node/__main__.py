"""`python -m store_node` runs the `loyalty-store` command."""

import sys

from store_node.cli import main

sys.exit(main())
