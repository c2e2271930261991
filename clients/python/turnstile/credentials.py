"""Credentials: a user's credential from a pg_turnstile realm."""

from typing import Any, Callable, Dict, Optional, TypeVar

from ._sql import fetch_one
from .errors import Rejected

T = TypeVar("T")

STATUS_COLUMNS = ("realm", "user_id", "status", "issued_at", "validated_at", "expires_at",
                  "logins", "validations", "failures", "last_error", "blocked_until")


class Credentials:
    """The credentials of one realm.  ``get`` returns the credential to use
    now: the cached one while it is fresh, else the one exactly one caller
    (in any process) got by logging in again while the others waited.

    >>> creds = Credentials(conn)
    >>> token = creds.get(7)
    >>> creds.get(7) == token
    True
    >>> creds.status(7)['status']
    'fresh'
    >>> creds.use(7, lambda credential: credential == token)
    True
    """

    def __init__(self, conn: Any, realm: str = "default"):
        self.conn = conn
        self.realm = realm

    def get(self, user_id: int) -> str:
        """The credential to use now for user_id."""
        return fetch_one(self.conn, "SELECT turnstile.credential_get(%s, %s)",
                         (user_id, self.realm))[0]

    def invalidate(self, user_id: int, credential: Optional[str] = None) -> bool:
        """Mark the cached credential as not working; with credential, only
        if that is still the cached one.  True if one was invalidated."""
        return fetch_one(self.conn, "SELECT turnstile.credential_invalidate(%s, %s, %s)",
                         (user_id, self.realm, credential))[0]

    def status(self, user_id: int) -> Optional[Dict[str, Any]]:
        """The user's row of turnstile.credential_status (never the
        credential itself), or None."""
        row = fetch_one(self.conn,
                        "SELECT " + ", ".join(STATUS_COLUMNS) +
                        " FROM turnstile.credential_status WHERE realm = %s AND user_id = %s",
                        (self.realm, user_id))
        return dict(zip(STATUS_COLUMNS, row)) if row is not None else None

    def use(self, user_id: int, call: Callable[[str], T]) -> T:
        """call(credential); if it raises Rejected, invalidate exactly that
        credential and call once more with a fresh one (a second Rejected is
        raised)."""
        credential = self.get(user_id)
        try:
            return call(credential)
        except Rejected:
            self.invalidate(user_id, credential)
            return call(self.get(user_id))
