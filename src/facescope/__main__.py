"""`python -m facescope ...`: the same as the `facescope` command."""

from facescope.cli import main

main()
