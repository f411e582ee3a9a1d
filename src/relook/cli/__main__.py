"""``python -m relook.cli`` (and ``torchrun ... -m relook.cli``): the ``relook`` entry point."""

import sys

from relook.cli import main

sys.exit(main())
