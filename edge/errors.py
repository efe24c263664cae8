"""One exception type for problems a user can fix; the CLI prints it and exits non-zero."""


class EdgeError(Exception):
    """A configuration, model or input problem, with a message saying what to do."""
