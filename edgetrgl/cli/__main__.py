import sys

from edgetrgl.cli.main import main

sys.exit(main())
