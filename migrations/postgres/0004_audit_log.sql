-- The audit log: security-relevant actions, newest last. Never secrets.
CREATE TABLE audit_log (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,    -- unix milliseconds
    actor  TEXT   NOT NULL,    -- principal subject, "admin-token", "cli", or a client IP
    action TEXT   NOT NULL,    -- key.created, key.revoked, auth.failures, ...
    target TEXT,               -- a key id, a path
    detail TEXT   NOT NULL     -- JSON object
);
CREATE INDEX audit_log_at ON audit_log (at);
