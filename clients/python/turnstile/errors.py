"""The exceptions of the turnstile package."""

from typing import Optional


class TurnstileError(Exception):
    """An error from a pg_turnstile call, with its SQLSTATE.

    The driver's own exception is the ``__cause__``; a failed call leaves a
    transaction that is not in autocommit mode aborted, as any failed
    statement does.
    """

    def __init__(self, message: str, sqlstate: Optional[str] = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class OutOfSync(TurnstileError, ValueError):
    """A conditional put found the counter changed since it was last read.

    A ``ValueError``, as boto's ``Counter`` raised; ``current`` is the value the
    counter has now, which the ``Counter`` object has taken too.
    """

    def __init__(self, name: str, expected: int, current: Optional[int]):
        super().__init__("Counter was out of sync", "40001")
        self.name = name
        self.expected = expected
        self.current = current


class Rejected(Exception):
    """Raise it from the call given to ``Credentials.use`` when the service
    refused the credential (an HTTP 401, say): ``use`` then invalidates that
    credential and calls once more with a fresh one."""


def sqlstate_of(error: BaseException) -> Optional[str]:
    """The SQLSTATE of a psycopg (3) or psycopg2 error, if it has one."""
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)


def wrapped(error: BaseException) -> TurnstileError:
    """A driver error as a TurnstileError, to be raised ``from`` it."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return TurnstileError(message, sqlstate_of(error))
