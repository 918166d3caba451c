-- The billing ledger, in micro-units (1,000,000 = $1). The entries are the
-- truth; each account row keeps their sums, updated in the same
-- transaction as the entries, so a balance is read without a scan:
--   balance = credits - debits - settled charges
--   pending = charges not yet settled
--   held    = open holds
-- and what a caller may spend is balance - pending - held.
CREATE TABLE billing_accounts (
    account    TEXT   PRIMARY KEY,     -- "key:<name>", "jwt:<sub>", "provider:<name>:<sub>"
    balance    BIGINT NOT NULL DEFAULT 0,
    pending    BIGINT NOT NULL DEFAULT 0,
    held       BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL           -- unix milliseconds
);

-- Money set aside for a call in flight, until it is posted or voided (the
-- row goes) or expires (the sweeper voids it).
CREATE TABLE billing_holds (
    request_key TEXT   PRIMARY KEY,    -- "<account> <idempotency key or request id>"
    account     TEXT   NOT NULL REFERENCES billing_accounts (account),
    amount      BIGINT NOT NULL,
    plugin      TEXT   NOT NULL,
    operation   TEXT   NOT NULL,       -- "GET /hello/{name}", "Query.summary", "tool echo"
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL          -- unix milliseconds
);
CREATE INDEX billing_holds_expires ON billing_holds (expires_at);

-- Every movement of money, never updated except to mark it settled.
CREATE TABLE billing_entries (
    id          BIGSERIAL PRIMARY KEY,
    account     TEXT   NOT NULL REFERENCES billing_accounts (account),
    kind        TEXT   NOT NULL,       -- charge | credit | debit
    amount      BIGINT NOT NULL,       -- > 0; the kind says which way
    plugin      TEXT,
    operation   TEXT,
    reason      TEXT,
    request_key TEXT   UNIQUE,         -- charges: one per request key, ever
    request_id  TEXT,
    created_at  BIGINT NOT NULL,         -- unix milliseconds
    settlement  TEXT                   -- charges: the settlement that deducted it
);
CREATE INDEX billing_entries_account ON billing_entries (account, id);
CREATE INDEX billing_entries_unsettled ON billing_entries (settlement, id);

CREATE TABLE billing_settlements (
    id          TEXT   PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    entries     BIGINT NOT NULL DEFAULT 0,
    amount      BIGINT NOT NULL DEFAULT 0
);
