"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class AnonbenchError(Exception):
    """Bad input or configuration: shown to the user as one line, no traceback."""


class UnknownNameError(AnonbenchError, KeyError):
    """A registry lookup failed (typo, unregistered plug-in)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(AnonbenchError, FileNotFoundError):
    """A model weight file is not on disk; the message names it and says how to get it."""
