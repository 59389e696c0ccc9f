//! Guests, the addresses they used, address bans, and host sessions.

use super::*;

impl Db {
    pub fn insert_guest(&self, g: &GuestRow, created_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO guests (id, token, name, is_host, banned, created_ms, is_screen, connected_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?8 THEN ?6 END)",
            )?
            .execute(params![
                g.id,
                g.token,
                g.name,
                g.is_host,
                g.banned,
                created_ms,
                g.is_screen,
                g.connected
            ])?;
        Ok(())
    }

    /// The first socket of a guest: it is no longer pruned as unused.
    pub fn set_connected(&self, id: GuestId, at_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE guests SET connected_ms = ?2 WHERE id = ?1 AND connected_ms IS NULL",
            )?
            .execute(params![id, at_ms])?;
        Ok(())
    }

    /// Remembers an address a guest used (`addr` is an address key: IPv4, or an IPv6 /64).
    pub fn add_guest_address(&self, id: GuestId, addr: &str, at_ms: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO guest_addresses (guest_id, addr, seen_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (guest_id, addr) DO UPDATE SET seen_ms = excluded.seen_ms",
            )?
            .execute(params![id, addr, at_ms])?;
        Ok(())
    }

    pub fn guest_addresses(&self) -> Result<Vec<(GuestId, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT guest_id, addr FROM guest_addresses")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Bans an address until `until_ms` (and forgets bans that are over at `now_ms`).
    pub fn ban_address(
        &self,
        addr: &str,
        guest: GuestId,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM address_bans WHERE until_ms <= ?1")?
            .execute([now_ms])?;
        self.conn
            .prepare_cached(
                "INSERT INTO address_bans (addr, guest_id, until_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (addr, guest_id) DO UPDATE SET until_ms = excluded.until_ms",
            )?
            .execute(params![addr, guest, until_ms])?;
        Ok(())
    }

    /// Lifts every ban of these addresses (whichever guest's ban put them there).
    pub fn unban_addresses(&self, addrs: &[String]) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare_cached("DELETE FROM address_bans WHERE addr = ?1")?;
        for a in addrs {
            st.execute([a])?;
        }
        Ok(())
    }

    /// Address bans still in force at `now_ms`.
    pub fn address_bans(&self, now_ms: i64) -> Result<Vec<(String, GuestId, i64)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT addr, guest_id, until_ms FROM address_bans WHERE until_ms > ?1")?;
        let rows = st.query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a guest that never connected and that nothing refers to (its addresses go
    /// with it). Returns whether it was deleted.
    pub fn delete_unused_guest(&self, id: GuestId) -> Result<bool, StoreError> {
        let unused: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM guests WHERE id = ?1 AND connected_ms IS NULL
                 AND is_host = 0 AND is_screen = 0 AND banned = 0)
             AND NOT EXISTS (SELECT 1 FROM requests WHERE guest_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM votes WHERE guest_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM likes WHERE guest_id = ?1)
             AND NOT EXISTS (SELECT 1 FROM skip_votes WHERE guest_id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if !unused {
            return Ok(false);
        }
        self.conn
            .prepare_cached("DELETE FROM guest_addresses WHERE guest_id = ?1")?
            .execute([id])?;
        self.conn
            .prepare_cached("DELETE FROM guests WHERE id = ?1")?
            .execute([id])?;
        Ok(true)
    }

    /// Deletes a screen (the host removed it): its token stops working.
    pub fn delete_screen(&self, id: GuestId) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM guest_addresses WHERE guest_id = ?1")?
            .execute([id])?;
        self.conn
            .prepare_cached("DELETE FROM guests WHERE id = ?1 AND is_screen = 1")?
            .execute([id])?;
        Ok(())
    }

    pub fn set_guest_name(&self, id: GuestId, name: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE guests SET name = ?2 WHERE id = ?1")?
            .execute(params![id, name])?;
        Ok(())
    }

    pub fn set_banned(&self, id: GuestId, banned: bool) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE guests SET banned = ?2 WHERE id = ?1")?
            .execute(params![id, banned])?;
        Ok(())
    }

    pub fn guests(&self) -> Result<Vec<GuestRow>, StoreError> {
        let mut st = self
            .conn
            .prepare(
            "SELECT id, token, name, is_host, banned, is_screen, created_ms, connected_ms IS NOT NULL
             FROM guests ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(GuestRow {
                id: r.get(0)?,
                token: r.get(1)?,
                name: r.get(2)?,
                is_host: r.get(3)?,
                banned: r.get(4)?,
                is_screen: r.get(5)?,
                created_ms: r.get(6)?,
                connected: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- host sessions -------------------------------------------------------------------

    pub fn host_sessions(&self) -> Result<Vec<crate::login::HostSession>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT guest_id, created_ms, expires_ms, last_seen_ms, addr FROM host_sessions
             ORDER BY created_ms",
        )?;
        let rows = st.query_map([], |r| {
            Ok(crate::login::HostSession {
                guest_id: r.get(0)?,
                created_ms: r.get(1)?,
                expires_ms: r.get(2)?,
                last_seen_ms: r.get(3)?,
                addr: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn insert_host_session(&self, s: &crate::login::HostSession) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO host_sessions
                 (guest_id, created_ms, expires_ms, last_seen_ms, addr)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                s.guest_id,
                s.created_ms,
                s.expires_ms,
                s.last_seen_ms,
                s.addr
            ])?;
        Ok(())
    }

    /// Deletes these host sessions, or all of them; returns how many went.
    pub fn delete_host_sessions(&self, ids: Option<&[GuestId]>) -> Result<usize, StoreError> {
        Ok(match ids {
            None => self.conn.execute("DELETE FROM host_sessions", [])?,
            Some(ids) => {
                let mut st = self
                    .conn
                    .prepare_cached("DELETE FROM host_sessions WHERE guest_id = ?1")?;
                let mut n = 0;
                for id in ids {
                    n += st.execute([id])?;
                }
                n
            }
        })
    }

    pub fn delete_expired_host_sessions(&self, now_ms: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM host_sessions WHERE expires_ms <= ?1", [now_ms])?)
    }

    pub fn touch_host_sessions(&self, seen: &[(GuestId, i64)]) -> Result<(), StoreError> {
        let mut st = self
            .conn
            .prepare_cached("UPDATE host_sessions SET last_seen_ms = ?2 WHERE guest_id = ?1")?;
        for (id, at) in seen {
            st.execute(params![id, at])?;
        }
        Ok(())
    }
}
