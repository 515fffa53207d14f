"""``python -m ml_dash.cli``: the ``ml-dash`` command."""

import sys

from .main import main

sys.exit(main())
