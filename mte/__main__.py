"""`python -m mte` is the `mte` command."""

from mte.cli import main

main()
