-- A request may be dedicated ("for Anna"): the queue row, the TV when it starts, the toast and
-- the history show it. At most 40 characters, checked before it is written.
ALTER TABLE requests ADD COLUMN dedication TEXT;
