-- Host logins: a host guest's token works only while its session is here. Rows end when they
-- expire (a night), when the host logs them out, or when the PIN changes (all of them).
CREATE TABLE host_sessions (
    guest_id     INTEGER PRIMARY KEY REFERENCES guests (id),
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    addr         TEXT    NOT NULL DEFAULT ''
);
