"""Running one statement on a psycopg (3) or psycopg2 connection."""

from typing import Any, Optional, Sequence

from .errors import sqlstate_of, wrapped


def fetch_one(conn: Any, sql: str, params: Sequence[Any] = ()) -> Optional[tuple]:
    """Run sql with params (%s placeholders, as both drivers take them) and
    return its first row, or None; a database error becomes TurnstileError."""
    with conn.cursor() as cur:
        try:
            cur.execute(sql, tuple(params))
        except Exception as error:
            if sqlstate_of(error) is None:
                raise
            raise wrapped(error) from error
        return cur.fetchone() if cur.description is not None else None
