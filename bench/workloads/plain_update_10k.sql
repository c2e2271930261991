-- baseline: increment one of 10,000 rows, at random
\set id random(1, 10000)
UPDATE plain_counter SET v = v + 1 WHERE id = :id RETURNING v;
