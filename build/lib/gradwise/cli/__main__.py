"""`python -m gradwise.cli` runs the command line, as the `gradwise` script does."""

from gradwise.cli import main

main()
