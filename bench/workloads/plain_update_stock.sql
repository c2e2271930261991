-- baseline: take one unit from a single row, never below zero
UPDATE stock_row SET v = v - 1 WHERE id = 1 AND v > 0 RETURNING v;
