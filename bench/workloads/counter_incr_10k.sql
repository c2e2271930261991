-- turnstile: increment one of 10,000 plain counters c:1 .. c:10000, at random
-- (the ::text makes the name text || text; text || integer would go through
-- the SQL function textanycat, whose inlining at every plan costs more than
-- the increment itself, and would measure that instead)
\set id random(1, 10000)
SELECT turnstile.counter_incr('c:' || :id::text);
