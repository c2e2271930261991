-- turnstile: read the hot counter (the exact sum of its 16 slots)
SELECT turnstile.counter_get('hot');
