"""The one error type of key files."""


class KeyFileError(Exception):
    """A key file that cannot be read; the message is one line for the user."""
