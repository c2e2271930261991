-- the plain-SQL baseline of bulk_incr_100k.sql: a loop of 100,000 UPDATEs
DO $$ BEGIN FOR i IN 1 .. 100000 LOOP UPDATE plain_bulk SET v = v + 1 WHERE id = i; END LOOP; END $$;
