"""`python -m acpd` runs the command line."""

from acpd.cli import main

main()
