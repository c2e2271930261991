-- baseline: increment a single row
UPDATE one_row SET v = v + 1 WHERE id = 1 RETURNING v;
