"""Counter: boto's SimpleDB counter, over a pg_turnstile counter."""

import functools
from datetime import datetime
from typing import Any, Optional, Union

from ._sql import fetch_one
from .errors import OutOfSync, TurnstileError

BIGINT_MIN = -(2 ** 63)
BIGINT_MAX = 2 ** 63 - 1


@functools.total_ordering
class Counter:
    """A counter that several processes share, with the value this object
    last saw.

    ``Counter(conn, name, initial)`` creates the counter at ``initial`` if it
    does not exist (two processes may do so at once) and reads it.
    ``c += n`` and ``c -= n`` are conditional puts from the value the object
    holds: they apply only if the counter still has that value, else they
    raise ``OutOfSync`` (a ``ValueError``) and the object takes the current
    value and timestamp, so the next try starts from there.  ``incr`` and
    ``decr`` add unconditionally and return the new value.  ``timestamp``
    is the server's time of the counter's last change.

    >>> hits = Counter(conn, 'hits')
    >>> hits.incr(), hits.incr(5), hits.decr()
    (1, 6, 5)
    >>> hits > 4, hits == Counter(other, 'hits'), 5 == hits
    (True, True, True)
    """

    def __init__(self, conn: Any, name: str, initial: int = 0):
        self.conn = conn
        self.name = name
        self.value: int = initial
        self.timestamp: Optional[datetime] = None
        fetch_one(conn, "SELECT turnstile.counter_create(%s, %s)", (name, initial))
        self.refresh()

    def refresh(self) -> int:
        """Read the counter's current value and timestamp."""
        row = fetch_one(self.conn,
                        "SELECT value, updated_at FROM turnstile.counter_info(%s)",
                        (self.name,))
        if row is None:
            raise TurnstileError(f'counter "{self.name}" does not exist', "42704")
        self.value, self.timestamp = row
        return self.value

    def _put(self, delta: int) -> "Counter":
        expected = self.value
        new_value = expected + delta
        if not BIGINT_MIN <= new_value <= BIGINT_MAX:
            raise TurnstileError(f'counter "{self.name}" would leave the bigint range', "22003")
        applied, value, _version, updated_at = fetch_one(
            self.conn,
            "SELECT applied, value, version, updated_at FROM turnstile.counter_cas(%s, %s, %s)",
            (self.name, expected, new_value))
        # a counter dropped meanwhile counts as 0, as the conditional put does
        self.value = value if value is not None else 0
        self.timestamp = updated_at
        if not applied:
            raise OutOfSync(self.name, expected, self.value)
        return self

    def __iadd__(self, delta: int) -> "Counter":
        return self._put(delta)

    def __isub__(self, delta: int) -> "Counter":
        return self._put(-delta)

    def incr(self, delta: int = 1) -> int:
        """Add delta whatever the value is now; return the new value."""
        self.value = fetch_one(self.conn, "SELECT turnstile.counter_incr(%s, %s)",
                               (self.name, delta))[0]
        self._read_timestamp()
        return self.value

    def decr(self, delta: int = 1) -> int:
        """Subtract delta whatever the value is now; return the new value."""
        self.value = fetch_one(self.conn, "SELECT turnstile.counter_decr(%s, %s)",
                               (self.name, delta))[0]
        self._read_timestamp()
        return self.value

    def _read_timestamp(self) -> None:
        row = fetch_one(self.conn, "SELECT updated_at FROM turnstile.counter_info(%s)",
                        (self.name,))
        if row is not None:
            self.timestamp = row[0]

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, {self.value})"

    @staticmethod
    def _other(other: Union["Counter", int]) -> int:
        return other.value if isinstance(other, Counter) else other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (Counter, int)):
            return NotImplemented
        return self.value == self._other(other)

    def __lt__(self, other: Union["Counter", int]) -> bool:
        if not isinstance(other, (Counter, int)):
            return NotImplemented
        return self.value < self._other(other)

    __hash__ = None  # it changes
