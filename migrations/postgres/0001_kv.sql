-- Plugin key-value data: one namespace per plugin, optional expiry.
CREATE TABLE kv (
    plugin     TEXT   NOT NULL,
    key        BYTEA  NOT NULL,
    value      BYTEA  NOT NULL,
    expires_at BIGINT,              -- unix milliseconds; NULL = never
    PRIMARY KEY (plugin, key)
);

CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
