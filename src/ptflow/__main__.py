"""`python -m ptflow` and the `ptflow` command: the command line, Ctrl-C covered from the
first import.

`ptflow.cli` takes a tenth of a second to import, before it can set up its own handling
of Ctrl-C; a Ctrl-C then would print Python's traceback. Here it is one line instead.
"""

import sys


def main() -> int:
    try:
        from ptflow.cli import main as run_command_line

        return run_command_line()
    except KeyboardInterrupt:  # before the command line's own handling was in place
        # console._interrupted's line, written out: importing console now could be cut
        # short by the same Ctrl-C's aftermath (a module half made)
        print("error: interrupted; files already written are complete.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
