"""The one error type the CLI turns into a single clear line (and a non-zero exit)."""


class CloudcoverError(Exception):
    """A user-facing failure: the message says what went wrong and where (a file, a flag)."""
