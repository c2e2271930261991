-- baseline: read one of 1,000 credentials by primary key, at random
\set uid random(1, 1000)
SELECT credential FROM plain_credential WHERE user_id = :uid;
