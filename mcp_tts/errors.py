"""Errors a caller can act on: each message names what was wrong and what is accepted."""


class TTSError(Exception):
    """A request that cannot be served as asked; the server goes on serving."""


class HostError(TTSError):
    """An engine host could not be reached, or went away mid-request."""


class EngineFailed(TTSError):
    """An engine host answered a request with Failed; `code` says why (e.g. "cancelled", "unknown_voice")."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
