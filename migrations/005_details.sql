-- What MPD clients show of a file beyond the party's own fields: more tags, and the audio
-- format as the container states it (`Format: 44100:16:2`, `bitrate`).
ALTER TABLE tracks ADD COLUMN album_artist TEXT;
ALTER TABLE tracks ADD COLUMN genre TEXT;
ALTER TABLE tracks ADD COLUMN date TEXT;
ALTER TABLE tracks ADD COLUMN disc INTEGER;
ALTER TABLE tracks ADD COLUMN sample_rate INTEGER;
-- NULL for a lossy codec, which decodes to floating point (MPD prints `f`).
ALTER TABLE tracks ADD COLUMN bits INTEGER;
ALTER TABLE tracks ADD COLUMN channels INTEGER;
ALTER TABLE tracks ADD COLUMN bitrate_kbps INTEGER;
-- Tracks scanned before this migration have none of these: the next scan reads them once more
-- (their stamps look changed to it) without throwing away their loudness measurements, which
-- belong to the unchanged file.
ALTER TABLE tracks ADD COLUMN details_read INTEGER NOT NULL DEFAULT 0;
