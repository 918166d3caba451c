-- Holds are written twice per priced call (placed, then posted or voided),
-- and every B-tree a write touches is one more page in that batch's commit.
-- A hold is found only by its request key, so the table is keyed by it
-- (WITHOUT ROWID: one B-tree instead of a rowid table plus its key's
-- index), and the expiry sweep reads the few open holds whole instead of
-- keeping an index on expires_at.
CREATE TABLE billing_holds_by_key (
    request_key TEXT   PRIMARY KEY,    -- "<account> <idempotency key or request id>"
    account     TEXT   NOT NULL REFERENCES billing_accounts (account),
    amount      INTEGER NOT NULL,
    plugin      TEXT   NOT NULL,
    operation   TEXT   NOT NULL,       -- "GET /hello/{name}", "Query.summary", "tool echo"
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL          -- unix milliseconds
) WITHOUT ROWID;
INSERT INTO billing_holds_by_key
    SELECT request_key, account, amount, plugin, operation, created_at, expires_at FROM billing_holds;
DROP TABLE billing_holds;
ALTER TABLE billing_holds_by_key RENAME TO billing_holds;
