"""``python -m mmkp_helpers.overlap``: the ``mmkp-overlap`` command line."""
import sys

from .cli import main

sys.exit(main())
