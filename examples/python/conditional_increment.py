#!/usr/bin/python3
"""Reserve stock with pg_turnstile's conditional increment, the way an
application should: compute from the value you know, apply only if the
counter still holds it, and on SQLSTATE 40001 retry with the current value
that the error's DETAIL carries, without another query.

    turnstile.counter_incr(name, delta, expected)

applies delta only if the counter equals expected; otherwise it raises 40001
"counter ... is out of sync" with DETAIL "Expected value X, current value Y."
So a client never goes below zero (it checks before it asks), never takes
the same unit twice (the put is conditional), and needs one round trip per
attempt: every answer, success or conflict, tells it the current value.

Run as a demo, it starts several processes that reserve random amounts from
one stock counter until it is empty, and checks that exactly the initial
stock was reserved, no more and no less:

    python3 examples/python/conditional_increment.py "host=127.0.0.1 dbname=app user=app"

It needs psycopg2 (Debian: python3-psycopg2) and a database where
pg_turnstile is installed, and a role with the README's grants; it creates
the table turnstile_example_reservation in the first schema of the role's
search_path that it may create in (the README gives the role app a schema
app of its own), and the counter example.stock.
"""

import argparse
import multiprocessing
import random
import re
import sys
from collections import namedtuple

import psycopg2
import psycopg2.errors

# The current value in the out-of-sync DETAIL.  search, not match: through
# PL/Proxy the DETAIL arrives as "Remote detail: Expected value X, ...".
CURRENT_VALUE = re.compile(r"current value (-?\d+)")

MAX_ATTEMPTS = 1000

Reservation = namedtuple("Reservation", "reserved stock conflicts")


def read_stock(conn, name):
    """The counter's value now (a missing counter counts as 0)."""
    with conn:
        with conn.cursor() as cur:
            cur.execute("SELECT turnstile.counter_get(%s)", (name,))
            value = cur.fetchone()[0]
    return 0 if value is None else value


def reserve(conn, name, amount, stock=None, record=None):
    """Take amount from counter name if it holds at least that much.

    stock is the value the caller believes the counter holds (for example
    what the previous reserve returned); None reads it first.  record, if
    given, is called as record(cursor, amount) inside the same transaction
    as the decrement, so that what it writes commits or rolls back with it.

    Returns Reservation(reserved, stock, conflicts): whether amount was
    taken, the counter's value after the reservation (or, when there was
    not enough, the value that was too small), and how many times another
    client got there first.  Each attempt runs in a transaction of its own:
    a 40001 aborts the whole transaction, so the whole transaction is what
    is retried.
    """
    if stock is None:
        stock = read_stock(conn, name)
    conflicts = 0
    for _ in range(MAX_ATTEMPTS):
        if stock < amount:
            return Reservation(False, stock, conflicts)
        try:
            with conn:  # commit on success, roll back on any error
                with conn.cursor() as cur:
                    cur.execute("SELECT turnstile.counter_incr(%s, %s, %s)",
                                (name, -amount, stock))
                    remaining = cur.fetchone()[0]
                    if record is not None:
                        record(cur, amount)
            return Reservation(True, remaining, conflicts)
        except psycopg2.errors.SerializationFailure as e:
            # 40001: someone else changed the counter since we read it.
            conflicts += 1
            found = CURRENT_VALUE.search(e.diag.message_detail or "")
            # No value in the DETAIL: a 40001 of another kind (for example
            # turnstile.isolation = 'repeatable read'), so read it again.
            stock = int(found.group(1)) if found else read_stock(conn, name)
    raise RuntimeError(f"could not reserve {amount} from {name!r} "
                       f"in {MAX_ATTEMPTS} attempts")


COUNTER = "example.stock"
LEDGER = "turnstile_example_reservation"


def worker(args):
    """One client process: reserve 1 to 5 units at a time until the stock
    is empty.  Returns (units reserved, reservations, conflicts)."""
    conninfo, worker_id, seed = args
    rng = random.Random(seed)
    conn = psycopg2.connect(conninfo)

    def record(cur, amount):
        cur.execute(f"INSERT INTO {LEDGER} (worker, amount) VALUES (%s, %s)",
                    (worker_id, amount))

    units = reservations = conflicts = 0
    stock = None  # unknown: the first reserve reads it
    try:
        while stock is None or stock > 0:
            amount = rng.randint(1, 5)
            if stock is not None:
                amount = min(amount, stock)
            r = reserve(conn, COUNTER, amount, stock, record)
            conflicts += r.conflicts
            if r.reserved:
                units += amount
                reservations += 1
            stock = r.stock
            if stock < 0:
                raise AssertionError(f"stock went below zero: {stock}")
    finally:
        conn.close()
    return units, reservations, conflicts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("conninfo", help="libpq connection string")
    parser.add_argument("--stock", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()

    conn = psycopg2.connect(args.conninfo)
    with conn:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {LEDGER} "
                        "(worker integer NOT NULL, amount integer NOT NULL)")
            cur.execute(f"TRUNCATE {LEDGER}")
            cur.execute("SELECT turnstile.counter_set(%s, %s)",
                        (COUNTER, args.stock))
            cur.execute("SELECT version FROM turnstile.counter_info(%s)",
                        (COUNTER,))
            start_version = cur.fetchone()[0]

    # Each process opens its own connection: never share one across fork.
    jobs = [(args.conninfo, n, n) for n in range(args.processes)]
    with multiprocessing.Pool(args.processes) as pool:
        results = pool.map(worker, jobs)

    units = sum(r[0] for r in results)
    reservations = sum(r[1] for r in results)
    conflicts = sum(r[2] for r in results)
    with conn:
        with conn.cursor() as cur:
            cur.execute("SELECT value, version FROM turnstile.counter_info(%s)",
                        (COUNTER,))
            left, version = cur.fetchone()
            cur.execute(f"SELECT count(*), coalesce(sum(amount), 0) FROM {LEDGER}")
            ledger_rows, ledger_units = cur.fetchone()
    conn.close()

    for n, (u, res, c) in enumerate(results):
        print(f"process {n}: reserved {u} in {res} reservations, "
              f"{c} conflicts retried")
    print(f"{args.processes} processes reserved {units} of {args.stock} "
          f"in {reservations} reservations ({conflicts} conflicts retried)")
    print(f"stock left: {left}")

    problems = []
    if units != args.stock:
        problems.append(f"reserved {units}, expected {args.stock}")
    if left != 0:
        problems.append(f"stock left {left}, expected 0")
    if (ledger_rows, ledger_units) != (reservations, units):
        problems.append(f"ledger has {ledger_rows} rows for {ledger_units} "
                        f"units, expected {reservations} for {units}")
    if version - start_version != reservations:
        problems.append(f"counter changed {version - start_version} times, "
                        f"expected once per reservation ({reservations})")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    print("ok: every unit reserved exactly once, never below zero")
    return 0


if __name__ == "__main__":
    sys.exit(main())
