"""`python -m client_sim` is `refresh-sim`."""

import sys

from client_sim.cli import main

sys.exit(main())
