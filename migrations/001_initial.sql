-- The library index. Rows are never deleted: a file that disappears is marked absent, so the
-- history that points at it stays readable.
CREATE TABLE tracks (
    id          INTEGER PRIMARY KEY,
    path        TEXT    NOT NULL UNIQUE,
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER NOT NULL,
    title       TEXT    NOT NULL,
    artist      TEXT    NOT NULL DEFAULT '',
    album       TEXT    NOT NULL DEFAULT '',
    track_no    INTEGER,
    duration_ms INTEGER NOT NULL,
    has_art     INTEGER NOT NULL DEFAULT 0,
    present     INTEGER NOT NULL DEFAULT 1,
    likes       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tracks_present_likes ON tracks (present, likes);

-- Accent- and case-insensitive prefix search over title, artist and album.
CREATE VIRTUAL TABLE tracks_fts USING fts5 (
    title, artist, album,
    content = 'tracks', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '1 2 3'
);
CREATE TRIGGER tracks_fts_insert AFTER INSERT ON tracks BEGIN
    INSERT INTO tracks_fts (rowid, title, artist, album)
    VALUES (new.id, new.title, new.artist, new.album);
END;
CREATE TRIGGER tracks_fts_update AFTER UPDATE OF title, artist, album ON tracks BEGIN
    INSERT INTO tracks_fts (tracks_fts, rowid, title, artist, album)
    VALUES ('delete', old.id, old.title, old.artist, old.album);
    INSERT INTO tracks_fts (rowid, title, artist, album)
    VALUES (new.id, new.title, new.artist, new.album);
END;
CREATE TRIGGER tracks_fts_delete AFTER DELETE ON tracks BEGIN
    INSERT INTO tracks_fts (tracks_fts, rowid, title, artist, album)
    VALUES ('delete', old.id, old.title, old.artist, old.album);
END;

CREATE TABLE guests (
    id         INTEGER PRIMARY KEY,
    token      TEXT    NOT NULL UNIQUE,
    name       TEXT    NOT NULL DEFAULT '',
    is_host    INTEGER NOT NULL DEFAULT 0,
    banned     INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);

-- A request is a queue entry until it is played or removed.
CREATE TABLE requests (
    id         INTEGER PRIMARY KEY,
    track_id   INTEGER NOT NULL REFERENCES tracks (id),
    guest_id   INTEGER REFERENCES guests (id),
    created_ms INTEGER NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'queued'
               CHECK (state IN ('queued', 'played', 'removed')),
    pin        INTEGER,
    ended_ms   INTEGER
);
CREATE INDEX requests_state ON requests (state);

CREATE TABLE votes (
    request_id INTEGER NOT NULL REFERENCES requests (id),
    guest_id   INTEGER NOT NULL REFERENCES guests (id),
    PRIMARY KEY (request_id, guest_id)
) WITHOUT ROWID;

CREATE TABLE plays (
    id          INTEGER PRIMARY KEY,
    track_id    INTEGER NOT NULL REFERENCES tracks (id),
    request_id  INTEGER REFERENCES requests (id),
    started_ms  INTEGER NOT NULL,
    -- Saved every few seconds so a restart resumes close to where the music was.
    position_ms INTEGER NOT NULL DEFAULT 0,
    ended_ms    INTEGER,
    end_reason  TEXT CHECK (end_reason IN ('finished', 'skipped', 'error', 'removed'))
);
CREATE INDEX plays_started ON plays (started_ms);

CREATE TABLE likes (
    play_id    INTEGER NOT NULL REFERENCES plays (id),
    guest_id   INTEGER NOT NULL REFERENCES guests (id),
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (play_id, guest_id)
) WITHOUT ROWID;

CREATE TABLE skip_votes (
    play_id  INTEGER NOT NULL REFERENCES plays (id),
    guest_id INTEGER NOT NULL REFERENCES guests (id),
    PRIMARY KEY (play_id, guest_id)
) WITHOUT ROWID;

-- Party settings (JSON values) and other small facts such as the generated host PIN.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
