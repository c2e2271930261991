-- turnstile: increment one of 10,000 plain counters c:1 .. c:10000, at random
\set id random(1, 10000)
SELECT turnstile.counter_incr('c:' || :id);
