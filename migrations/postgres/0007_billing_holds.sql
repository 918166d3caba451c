-- The expiry sweep reads the few open holds whole; an index on expires_at
-- only cost every hold placed and every hold taken one more index write.
DROP INDEX billing_holds_expires;
