-- Identities: screens (the TV) paired by the host, the addresses each guest used (so that a
-- ban sticks to the phone, not just to its token), address bans for the night, and whether a
-- guest ever connected (guests that never did are pruned).
ALTER TABLE guests ADD COLUMN is_screen INTEGER NOT NULL DEFAULT 0;
-- When a socket of this guest was first seen; NULL while it never connected.
ALTER TABLE guests ADD COLUMN connected_ms INTEGER;
-- Guests from before this migration are kept as they are: treat them as having connected.
UPDATE guests SET connected_ms = created_ms;

-- An IPv4 address or an IPv6 /64 prefix ("2001:db8:1:2::/64") a guest used: where its token
-- was made, and every socket.
CREATE TABLE guest_addresses (
    guest_id INTEGER NOT NULL REFERENCES guests (id),
    addr     TEXT    NOT NULL,
    seen_ms  INTEGER NOT NULL,
    PRIMARY KEY (guest_id, addr)
) WITHOUT ROWID;

-- Addresses of banned guests, refused new tokens and actions until `until_ms`. `guest_id` is
-- the guest whose ban put the address here (an unban lifts its rows); no foreign key, so a
-- ban outlives nothing it should not.
CREATE TABLE address_bans (
    addr     TEXT    NOT NULL,
    guest_id INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    PRIMARY KEY (addr, guest_id)
) WITHOUT ROWID;
