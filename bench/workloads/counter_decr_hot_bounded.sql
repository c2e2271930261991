-- turnstile: take one unit from a hot counter with lower = 0 (16 slots),
-- far from its bound: each slot's share of the room serves its decrements
SELECT turnstile.counter_decr('hot_stock');
