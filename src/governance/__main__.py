"""`python -m governance` runs the same command line as `governance`."""

from governance.cli import main

main()
