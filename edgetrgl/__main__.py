"""``python -m edgetrgl`` (and ``torchrun -m edgetrgl``): the command line."""

import sys

from edgetrgl.cli.main import main

sys.exit(main())
