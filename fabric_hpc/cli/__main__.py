"""``python -m fabric_hpc.cli``: the ``fabric`` command where no console script is on PATH (systemd units)."""

import sys

from fabric_hpc.cli.main import main

sys.exit(main())
