"""`python -m gradwise` runs the command line, as the `gradwise` script does."""

from gradwise.cli import main

main()
