--
-- counter_bounds: bounded counters.  counter_create's lower and upper,
-- counter_bounds, counter_try_incr with and without clamp; every function
-- that changes a value refuses to leave the range (23514, with the current
-- value, the change and the bound) and changes nothing; bounds at the
-- bigint limits; hot bounded counters and the shares of their slots.
--
\set SHOW_CONTEXT never

-- stock that never goes below zero
SELECT turnstile.counter_create('stock', 3, lower => 0);
SELECT turnstile.counter_decr('stock', 2);
SELECT turnstile.counter_decr('stock', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_get('stock');
SELECT turnstile.counter_decr('stock');
SELECT turnstile.counter_decr('stock');
\echo :LAST_ERROR_SQLSTATE
-- a quota that never goes above its limit
SELECT turnstile.counter_create('quota', 0, 1, NULL, 10);
SELECT turnstile.counter_incr('quota', 10);
SELECT turnstile.counter_incr('quota');
\echo :LAST_ERROR_SQLSTATE
SELECT name, value, version, slots, lower, upper FROM turnstile.counter_info('quota');
SELECT name, value, lower, upper FROM turnstile.counters
 WHERE name IN ('stock', 'quota') ORDER BY name;

-- counter_try_incr: applies all of delta or nothing; with clamp, what fits
SELECT * FROM turnstile.counter_try_incr('stock', -1);
SELECT * FROM turnstile.counter_try_incr('stock', 5);
SELECT * FROM turnstile.counter_try_incr('stock', -6);
SELECT * FROM turnstile.counter_try_incr('stock', -6, clamp => true);
SELECT * FROM turnstile.counter_try_incr('stock', -6, clamp => true);
SELECT * FROM turnstile.counter_try_incr('quota', 0);
SELECT * FROM turnstile.counter_try_incr('quota', 3, true);
SELECT * FROM turnstile.counter_try_incr('quota', -4, true);
-- nothing added, nothing written: the version stays
SELECT version FROM turnstile.counter_info('quota') \gset
SELECT * FROM turnstile.counter_try_incr('quota', 100);
SELECT version = :version AS unchanged FROM turnstile.counter_info('quota');
-- a missing counter is created at 0 without bounds, like counter_incr
SELECT * FROM turnstile.counter_try_incr('tried', -7);
SELECT name, value, lower, upper FROM turnstile.counter_info('tried');

-- every other way to change a value: set, cas, the conditional put
SELECT turnstile.counter_set('stock', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_set('quota', 11);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_cas('quota', 6, 20);
\echo :LAST_ERROR_SQLSTATE
SELECT applied, value FROM turnstile.counter_cas('quota', 6, 10);
SELECT turnstile.counter_incr('quota', 1, 10);
\echo :LAST_ERROR_SQLSTATE
-- out of sync is told first: the bounds only matter for a put that applies
SELECT turnstile.counter_incr('quota', 1, 3);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_incr_once('stock', -1, 'bounds-1');
\echo :LAST_ERROR_SQLSTATE
-- a refused once-increment left no key behind: its transaction rolled back
SELECT count(*) FROM turnstile.idempotency_key WHERE key = 'bounds-1';
SELECT turnstile.counter_get('stock'), turnstile.counter_get('quota');

-- counter_bounds changes the range, and refuses one without the value in it
SELECT turnstile.counter_bounds('quota', 5, 20);
SELECT name, value, lower, upper FROM turnstile.counter_info('quota');
SELECT turnstile.counter_bounds('quota', 11, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_bounds('quota', NULL, 9);
\echo :LAST_ERROR_SQLSTATE
-- (the range may end at the value)
SELECT turnstile.counter_bounds('quota', 10, 10);
SELECT * FROM turnstile.counter_try_incr('quota', 1, true);
SELECT turnstile.counter_bounds('quota', NULL, NULL);
SELECT turnstile.counter_incr('quota', 1000);
SELECT name, value, lower, upper FROM turnstile.counter_info('quota');

-- bad arguments: a lower bound above the upper one (as CREATE SEQUENCE's
-- MINVALUE above MAXVALUE), an initial value outside, a missing counter, NULLs
SELECT turnstile.counter_create('bad', 0, 1, 5, 4);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_bounds('quota', 5, 4);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('bad', -1, 1, 0, 4);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_create('bad', 5, 1, 0, 4);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_bounds('missing', 0, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_try_incr(NULL, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_try_incr('stock', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_try_incr('stock', 1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT turnstile.counter_bounds(NULL, 0, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM turnstile.counters WHERE name IN ('bad', 'missing');

-- bounds at the bigint limits; clamping cannot overflow
SELECT turnstile.counter_create('edge', 0, 1, -9223372036854775808, 9223372036854775807);
SELECT * FROM turnstile.counter_try_incr('edge', 9223372036854775807);
SELECT * FROM turnstile.counter_try_incr('edge', 1);
SELECT * FROM turnstile.counter_try_incr('edge', 1, true);
SELECT * FROM turnstile.counter_try_incr('edge', -9223372036854775808);
SELECT * FROM turnstile.counter_try_incr('edge', -9223372036854775808, true);
SELECT * FROM turnstile.counter_try_incr('edge', -9223372036854775808, true);
SELECT * FROM turnstile.counter_try_incr('edge', -9223372036854775808, true);
SELECT turnstile.counter_decr('edge');
\echo :LAST_ERROR_SQLSTATE
-- a side without a bound ends at the bigint range: 22003 as before, and
-- clamp stops there
SELECT turnstile.counter_create('open_top', 9223372036854775806, 1, 0, NULL);
SELECT turnstile.counter_incr('open_top', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_try_incr('open_top', 2);
SELECT * FROM turnstile.counter_try_incr('open_top', 9223372036854775807, true);
SELECT * FROM turnstile.counter_try_incr('open_top', -9223372036854775808, true);
SELECT turnstile.counter_create('narrow', 9223372036854775807, 1,
                                9223372036854775807, 9223372036854775807);
SELECT * FROM turnstile.counter_try_incr('narrow', -9223372036854775808, true);

-- A hot counter with a bound on one side only: its slots have shares of the
-- room up to the end of the bigint range on the other side, so that they
-- cannot together pass it; clamping and refusing there work from any slot.
SELECT turnstile.counter_create('open_hot', 9223372036854775802, 2, lower => 0);
SELECT slot, value, slot_lower, slot_upper FROM turnstile.counter_slot
 WHERE name = 'open_hot' ORDER BY slot;
SELECT * FROM turnstile.counter_try_incr('open_hot', 10);
SELECT turnstile.counter_incr('open_hot', 10);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_try_incr('open_hot', 10, true);
SELECT turnstile.counter_get('open_hot');
SELECT turnstile.counter_drop('open_hot');

-- A hot bounded counter: each slot holds a share of the room (slot_lower,
-- slot_upper), and the shares add up to the bounds.
SELECT turnstile.counter_create('hot_stock', 1000, 4, 0, 2000);
SELECT slot, value, slot_lower, slot_upper FROM turnstile.counter_slot
 WHERE name = 'hot_stock' ORDER BY slot;
SELECT sum(slot_lower) AS lowers, sum(slot_upper) AS uppers FROM turnstile.counter_slot
 WHERE name = 'hot_stock';
-- far from the bound a decrement stays in its slot's share ...
SELECT turnstile.counter_decr('hot_stock', 100);
SELECT count(*) FILTER (WHERE value <> CASE WHEN slot = 0 THEN 1000 ELSE 0 END) AS slots_changed,
       array_agg(slot_lower ORDER BY slot) AS slot_lowers
  FROM turnstile.counter_slot WHERE name = 'hot_stock';
-- ... one past its share deals the room out again over all the slots
SELECT turnstile.counter_decr('hot_stock', 600);
SELECT slot, value, slot_lower, slot_upper FROM turnstile.counter_slot
 WHERE name = 'hot_stock' ORDER BY slot;
SELECT sum(slot_lower) AS lowers, sum(slot_upper) AS uppers FROM turnstile.counter_slot
 WHERE name = 'hot_stock';
-- down to the bound and no further
SELECT * FROM turnstile.counter_try_incr('hot_stock', -1000, true);
SELECT turnstile.counter_decr('hot_stock');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM turnstile.counter_try_incr('hot_stock', -1);
SELECT turnstile.counter_incr('hot_stock', 2000);
SELECT turnstile.counter_incr('hot_stock');
\echo :LAST_ERROR_SQLSTATE
SELECT name, value, slots, lower, upper FROM turnstile.counters WHERE name = 'hot_stock';

-- In one transaction: a refused change leaves everything as it was.
BEGIN;
SELECT turnstile.counter_create('tx_stock', 1, lower => 0);
SAVEPOINT s;
SELECT turnstile.counter_decr('tx_stock', 2);
ROLLBACK TO s;
SELECT turnstile.counter_decr('tx_stock');
COMMIT;
SELECT name, value, lower FROM turnstile.counter_info('tx_stock');

SELECT turnstile.counter_drop(name) FROM turnstile.counters
 WHERE name IN ('stock', 'quota', 'tried', 'edge', 'open_top', 'narrow', 'hot_stock',
                'tx_stock');
