"""Allow ``python -m gitsync`` as an alias of the ``gitsync`` console script."""

from gitsync.cli import main

main()
