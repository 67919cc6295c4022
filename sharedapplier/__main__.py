"""``python -m sharedapplier``: the same as the ``sharedapplier`` command."""
import sys

from .cmdline.main import main

sys.exit(main())
