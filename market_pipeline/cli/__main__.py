"""``python -m market_pipeline.cli``: the ``market-pipeline`` command."""

import sys

from market_pipeline.cli.main import main

sys.exit(main())
