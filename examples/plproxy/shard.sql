-- examples/plproxy/shard.sql — set up one shard of the PL/Proxy example.
--
-- Every shard is an ordinary pg_turnstile database: the extension, and the
-- same realms as every other shard (here the demo login service's 'default'
-- realm).  The proxy calls turnstile.* on the shard as the role that called
-- the proxy function, so on every shard that role must be able to log in,
-- and needs the grants the main README lists and turnstile.realm_grant for
-- the realms it uses (a superuser needs none).  Run it in every shard
-- database, as a superuser:
--
--   psql -v ON_ERROR_STOP=1 -d shard0 -f examples/plproxy/shard.sql

CREATE EXTENSION IF NOT EXISTS pg_turnstile;

\ir ../login_service.sql
