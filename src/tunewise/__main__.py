"""`python -m tunewise` is the `tunewise` command."""

import sys

from tunewise.cli import main

sys.exit(main())
