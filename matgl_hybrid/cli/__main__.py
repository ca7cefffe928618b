"""``python -m matgl_hybrid.cli``: the ``matgl-hybrid`` command."""

import sys

from matgl_hybrid.cli import main

sys.exit(main())
