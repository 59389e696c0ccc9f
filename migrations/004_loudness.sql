-- Loudness levelling. Every value is in LUFS (EBU R128) of the audio as decoded.
-- The tags' view (ReplayGain 2 / R128, converted to LUFS), read by the scan:
ALTER TABLE tracks ADD COLUMN tag_track_lufs REAL;
ALTER TABLE tracks ADD COLUMN tag_album_lufs REAL;
-- The background pass's measurement: integrated loudness, sample peak (1.0 = full scale) and
-- the length measured (ms, the weight of the track in its album's loudness).
ALTER TABLE tracks ADD COLUMN lufs REAL;
ALTER TABLE tracks ADD COLUMN peak REAL;
ALTER TABLE tracks ADD COLUMN measured_ms INTEGER;
-- Why the file could not be measured (silent, undecodable): it is not tried again until the
-- file changes.
ALTER TABLE tracks ADD COLUMN loudness_error TEXT;
-- The album's loudness, set on each of its tracks once none of them waits for the pass.
ALTER TABLE tracks ADD COLUMN album_lufs REAL;

-- What the pass has still to do, in folder order, without reading the whole table each time.
CREATE INDEX tracks_unmeasured ON tracks (path) WHERE lufs IS NULL AND loudness_error IS NULL;
-- An album's tracks (same folder and album tag) are looked up by their album tag.
CREATE INDEX tracks_album ON tracks (album);

-- Tracks scanned before this migration have never had their gain tags read, and the scan
-- reads only files whose size or modification time changed: make every one look changed so
-- the next scan reads it once more.
UPDATE tracks SET mtime_ns = -1;
