-- baseline: read one of 10,000 rows by primary key, at random
\set id random(1, 10000)
SELECT v FROM plain_counter WHERE id = :id;
