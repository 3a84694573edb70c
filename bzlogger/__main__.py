"""`python -m bzlogger` runs the command-line interface."""

from bzlogger.cli import main

if __name__ == "__main__":
    main()
