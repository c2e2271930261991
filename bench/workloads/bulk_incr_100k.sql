-- one transaction that increments 100,000 distinct counters
SELECT count(turnstile.counter_incr('b:' || g)) FROM generate_series(1, 100000) g;
