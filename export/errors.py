"""Errors the export command reports to the user instead of a traceback."""


class ExportError(Exception):
    """Bad model, bad data or a failed conversion; the message says what to do."""
