-- API keys: only a SHA-256 hash of each key is kept, found by its public
-- prefix. Revoked keys stay (revoked_at set) for the audit trail.
CREATE TABLE api_keys (
    key_id     TEXT    PRIMARY KEY,   -- the public prefix, e.g. "kk_3f9a1c2b"
    name       TEXT    NOT NULL UNIQUE,
    roles      TEXT    NOT NULL,      -- JSON array of role names
    key_hash   TEXT    NOT NULL,      -- hex SHA-256 of the whole key
    created_at INTEGER NOT NULL,      -- unix seconds
    revoked_at INTEGER                -- unix seconds; NULL = active
);
