"""``python -m centersmooth``: the ``centersmooth`` command without the installed script."""

import sys

from .cli import main

sys.exit(main())
