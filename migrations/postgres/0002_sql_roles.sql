-- The login role each plugin's SQL runs as, with its password, so every
-- engine sharing this database connects as the same role. Readable only by
-- the engine's own role (plugin roles have no rights in this schema).
CREATE TABLE sql_roles (
    plugin     TEXT PRIMARY KEY,
    role_name  TEXT NOT NULL UNIQUE,
    schema_name TEXT NOT NULL UNIQUE,
    password   TEXT NOT NULL
);
