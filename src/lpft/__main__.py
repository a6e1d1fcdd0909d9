"""``python -m lpft``: the ``lpft`` command (also what ``torchrun -m lpft`` starts)."""

import sys

from lpft.cli.main import main

sys.exit(main())
