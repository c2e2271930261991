"""Tests of the turnstile package against a real server, with the driver
TURNSTILE_TEST_DRIVER names (psycopg or psycopg2), connecting with the libpq
connection string TURNSTILE_TEST_DSN as a role with the README's grants.
The database has the README's login service (realm "default") and a realm
"py_short" whose credentials last 5 seconds and have no validate, so that an
expired credential means a login.

    TURNSTILE_TEST_DRIVER=psycopg2 TURNSTILE_TEST_DSN=... python3 -m unittest -v tests.test_turnstile
"""

import doctest
import importlib
import multiprocessing
import os
import time
import unittest
import uuid

import turnstile
from turnstile import Counter, Credentials, OutOfSync, Rejected, TurnstileError

DRIVER = importlib.import_module(os.environ.get("TURNSTILE_TEST_DRIVER", "psycopg2"))
DSN = os.environ["TURNSTILE_TEST_DSN"]


def connect():
    """An autocommit connection of the driver under test."""
    if DRIVER.__name__ == "psycopg":
        return DRIVER.connect(DSN, autocommit=True)
    conn = DRIVER.connect(DSN)
    conn.autocommit = True
    return conn


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def bump_in_another_process(name, delta):
    """A second process: read the counter and put value + delta."""
    conn = connect()
    try:
        c = Counter(conn, name)
        c += delta
        return c.value
    finally:
        conn.close()


def credential_in_another_process(args):
    realm, user_id = args
    conn = connect()
    try:
        return Credentials(conn, realm).get(user_id)
    finally:
        conn.close()


class WalkThrough(unittest.TestCase):
    """The docstrings' examples, the seed's walk-through among them."""

    def test_doctests(self):
        conn, other = connect(), connect()
        try:
            with conn.cursor() as cur:
                # the walk-through starts from fresh counters
                cur.execute("SELECT turnstile.counter_drop('counter1'), turnstile.counter_drop('hits')")
            # the package's classes are documented as turnstile.Counter and
            # turnstile.Credentials, so testing the package finds them all
            result = doctest.testmod(turnstile, extraglobs={"conn": conn, "other": other},
                                     optionflags=doctest.ELLIPSIS)
            self.assertEqual(result.failed, 0, "doctests of turnstile")
            # the walk-through, Counter's and Credentials' examples
            self.assertEqual(result.attempted, 20, "doctests of turnstile")
        finally:
            conn.close()
            other.close()


class CounterTest(unittest.TestCase):

    def setUp(self):
        self.conn = connect()

    def tearDown(self):
        self.conn.close()

    def test_out_of_sync_from_another_process(self):
        name = unique("sync")
        c = Counter(self.conn, name, 10)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            self.assertEqual(pool.apply(bump_in_another_process, (name, 5)), 15)
        before = c.timestamp
        with self.assertRaises(OutOfSync) as raised:
            c += 1
        self.assertIsInstance(raised.exception, ValueError)
        self.assertEqual(str(raised.exception), "Counter was out of sync")
        self.assertEqual((raised.exception.sqlstate, raised.exception.current), ("40001", 15))
        # the object took the current value and timestamp: the retry applies
        self.assertEqual(c.value, 15)
        self.assertGreaterEqual(c.timestamp, before)
        c += 1
        self.assertEqual(c.refresh(), 16)
        c -= 6
        self.assertEqual(int(Counter(self.conn, name)), 10)

    def test_errors_carry_the_sqlstate(self):
        with self.assertRaises(TurnstileError) as raised:
            Counter(self.conn, "")
        self.assertEqual(raised.exception.sqlstate, "22023")
        c = Counter(self.conn, unique("big"), 2 ** 63 - 1)
        with self.assertRaises(TurnstileError) as raised:
            c.incr()
        self.assertEqual(raised.exception.sqlstate, "22003")
        with self.assertRaises(TurnstileError) as raised:
            c += 1
        self.assertEqual(raised.exception.sqlstate, "22003")

    def test_a_transaction_of_the_callers(self):
        conn = DRIVER.connect(DSN)      # autocommit off: the calls are in its transaction
        try:
            name = unique("tx")
            c = Counter(conn, name)
            c += 3
            conn.rollback()
            self.assertEqual(Counter(self.conn, name).value, 0, "the creation rolled back too")
        finally:
            conn.close()


class CredentialsTest(unittest.TestCase):

    def setUp(self):
        self.conn = connect()

    def tearDown(self):
        self.conn.close()

    def test_one_login_per_expiry_from_several_processes(self):
        creds = Credentials(self.conn, "py_short")
        user_id = int(time.time() * 1000) % 1000000 + 1000
        first = creds.get(user_id)
        time.sleep(5.2)                 # the credential expires; the 8 processes then start within one ttl
        with multiprocessing.get_context("spawn").Pool(8) as pool:
            got = pool.map(credential_in_another_process, [("py_short", user_id)] * 8)
        self.assertEqual(len(set(got)), 1, "every process got the same credential")
        self.assertNotEqual(got[0], first)
        self.assertEqual(creds.status(user_id)["logins"], 2, "one login for the first call, one per expiry")

    def test_a_rejected_credential_is_invalidated_and_retried_once(self):
        creds = Credentials(self.conn)
        user_id = int(time.time() * 1000) % 1000000 + 2000000
        seen = []

        def call(credential):
            seen.append(credential)
            if len(seen) == 1:
                raise Rejected()
            return "done"

        self.assertEqual(creds.use(user_id, call), "done")
        self.assertEqual(len(seen), 2)
        self.assertNotEqual(seen[0], seen[1], "the retry had a fresh credential")
        self.assertEqual(creds.status(user_id)["logins"], 2)

        def always_rejected(credential):
            seen.append(credential)
            raise Rejected()

        with self.assertRaises(Rejected):
            creds.use(user_id, always_rejected)
        self.assertEqual(len(seen), 4, "exactly one retry")

    def test_invalidate_only_the_given_credential(self):
        creds = Credentials(self.conn)
        user_id = int(time.time() * 1000) % 1000000 + 3000000
        token = creds.get(user_id)
        self.assertFalse(creds.invalidate(user_id, "not-" + token))
        self.assertTrue(creds.invalidate(user_id, token))
        self.assertEqual(creds.status(user_id)["status"], "invalidated")
        self.assertIsNone(creds.status(-1))

    def test_errors_carry_the_sqlstate(self):
        with self.assertRaises(TurnstileError) as raised:
            Credentials(self.conn, "no_such_realm").get(1)
        self.assertEqual(raised.exception.sqlstate, "42704")


if __name__ == "__main__":
    unittest.main()
