-- Plugin names belong to the file that first declared them. A plugin's data
-- (kv, cache, SQL) is keyed by its name, so a name is never taken over by
-- another file that declares it: the operator releases it explicitly.
CREATE TABLE plugin_names (
    name       TEXT   PRIMARY KEY,    -- the manifest name
    file       TEXT   NOT NULL,       -- the owning file in the plugin directory, e.g. "notes-rust.wasm"
    claimed_at BIGINT NOT NULL        -- unix seconds
);
