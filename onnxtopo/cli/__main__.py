"""``python -m onnxtopo.cli``: the ``onnxtopo`` command."""

import sys

from . import main

sys.exit(main())
