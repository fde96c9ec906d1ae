"""``python -m centersmooth.cli``: the ``centersmooth`` command without the installed script."""

import sys

from . import main

sys.exit(main())
