-- turnstile: increment one of 10,000 plain counters c:1 .. c:10000, at
-- random, each call with an idempotency key of its own (the client's id and
-- a random number: a key used twice would be refused, with a chance of one
-- in about 10^13 over a whole run)
\set id random(1, 10000)
\set n random(1, 9223372036854775807)
SELECT turnstile.counter_incr_once('c:' || :id::text, 1, :client_id::text || '-' || :n::text);
