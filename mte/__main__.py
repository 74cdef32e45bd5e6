"""`python -m mte` is the `mte` command."""

from mte.launch import main

main()
