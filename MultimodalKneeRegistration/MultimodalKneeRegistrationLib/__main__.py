"""``python -m MultimodalKneeRegistrationLib``: the ``knee-register`` command line (see ``cli``)."""

import sys

from .cli import main

sys.exit(main())
