"""`python -m controlroom.cli`."""

import sys

from controlroom.cli import main

sys.exit(main())
