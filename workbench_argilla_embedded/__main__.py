"""`python -m workbench_argilla_embedded up|down|status [--home H] [--port P]`."""

import sys

from .manage import main

if __name__ == "__main__":
    sys.exit(main())
