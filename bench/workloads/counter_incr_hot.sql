-- turnstile: increment the one hot counter (16 slots)
SELECT turnstile.counter_incr('hot');
