"""`python -m jobctl.supervisor`: how the supervisor process is started (and how it shows in `ps`)."""

import sys

from jobctl.supervisor.daemon import main

sys.exit(main())
