"""`python -m dts` is the `dts` command."""

import sys

from dts.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
