-- Plugin key-value data: one namespace per plugin, optional expiry.
CREATE TABLE kv (
    plugin     TEXT    NOT NULL,
    key        BLOB    NOT NULL,
    value      BLOB    NOT NULL,
    expires_at INTEGER,             -- unix milliseconds; NULL = never
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;

CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
