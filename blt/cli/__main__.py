"""`python -m blt.cli`: the `blt` console script."""

from blt.cli import main

main()
