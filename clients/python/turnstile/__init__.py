"""pg_turnstile from Python: boto's ``Counter`` and a credential cache.

Both take an open connection of either driver, psycopg (3) or psycopg2, to a
database where the pg_turnstile extension is installed and the role has the
README's grants.  They run their statements in that connection's transaction:
with autocommit on, each call commits at once; with it off, commit as you
would for any SQL (a failed call leaves the transaction aborted until you
roll back, as any failed statement does).

The counter the seed code had, a SimpleDB ``Counter``, works the same here,
backed by the database (``conn`` and ``other`` are two connections):

>>> c = Counter(conn, 'counter1', 0)
>>> c += 1
>>> c == 1
True
>>> int(c), str(c)
(1, '1')
>>> c.timestamp.tzinfo is not None
True
>>> another_process = Counter(other, 'counter1')
>>> another_process += 5
>>> c += 1
Traceback (most recent call last):
    ...
turnstile.OutOfSync: Counter was out of sync
>>> c.value
6
>>> c += 1
>>> c
Counter('counter1', 7)
>>> c.incr(10), c.decr(2)
(17, 15)
"""

from .counter import Counter
from .credentials import Credentials
from .errors import OutOfSync, Rejected, TurnstileError

__all__ = ["Counter", "Credentials", "OutOfSync", "Rejected", "TurnstileError"]

# tracebacks name them as users import them
for _public in (Counter, Credentials, OutOfSync, Rejected, TurnstileError):
    _public.__module__ = __name__
del _public
