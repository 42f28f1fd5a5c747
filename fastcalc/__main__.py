"""``python -m fastcalc``: the same as the ``fastcalc`` command."""

import sys

from fastcalc.cli import main

sys.exit(main())
