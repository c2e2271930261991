-- baseline: the hand-written fixed-window upsert (take_token, a PL/pgSQL
-- function over the table plain_rate_limit) on one of 10,000 keys
\set id random(1, 10000)
SELECT take_token('k:' || :id::text, 1000000, '1 second');
