"""One exception type for every user-facing failure: the CLI prints one line and exits non-zero."""


class BpxlError(Exception):
    """A problem the user can fix (bad input, unreadable file, missing tool).

    The message is a single line that says what is wrong and, where possible, what to do.
    The CLIs (`bpxl`, `python -m mnist.train`) print it as `error: <message>` and exit 2.
    """
