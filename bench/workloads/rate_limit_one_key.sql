-- turnstile: every client calls the rate limit of one key
SELECT turnstile.rate_limit('one', 1000000, '1 second');
