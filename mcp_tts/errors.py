"""Errors a caller can act on: each message names what was wrong and what is accepted."""


class TTSError(Exception):
    """A request that cannot be served as asked; the server goes on serving."""


class HostError(TTSError):
    """An engine host could not be reached, or went away mid-request."""
