-- baseline: the hand-written fixed-window upsert on one key
SELECT take_token('one', 1000000, '1 second');
