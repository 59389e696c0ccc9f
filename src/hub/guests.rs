//! Who is at the party: guests, hosts and screens by id and by token, the addresses each
//! used, the bans (of tokens, and of addresses for the night), and the live sockets per
//! address. It owns one derived fact, the set of guests whose actions are refused and whose
//! votes do not count (banned by token, or seen on a banned address): it is recomputed here
//! whenever what it derives from changes, and nobody else writes it.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{HubError, Identity, Role};
use crate::party::GuestId;
use crate::store::GuestRow;

/// How long a ban keeps a guest's addresses out: the night.
pub const ADDRESS_BAN_MS: i64 = 12 * 3600 * 1000;

pub(crate) struct Guest {
    pub name: String,
    pub host: bool,
    /// Banned by the host (the token). Whether the guest is refused is [`Guests::is_banned`],
    /// which also covers bans of its addresses.
    pub banned: bool,
    pub screen: bool,
    /// Live sockets; the skip threshold counts guests with at least one.
    pub sockets: u32,
    /// A socket of this guest was seen (a guest that never connects is pruned).
    pub connected_ever: bool,
    /// The address keys it used (its token's and its sockets').
    pub addrs: HashSet<String>,
    /// The digest of its token, as stored.
    pub token: String,
}

impl Guest {
    pub(crate) fn new(
        name: String,
        host: bool,
        screen: bool,
        token: String,
        addr: Option<String>,
    ) -> Guest {
        Guest {
            name,
            host,
            banned: false,
            screen,
            sockets: 0,
            connected_ever: false,
            addrs: addr.into_iter().collect(),
            token,
        }
    }

    pub(crate) fn role(&self) -> Role {
        if self.host {
            Role::Host
        } else if self.screen {
            Role::Screen
        } else {
            Role::Guest
        }
    }

    /// Hosts and screens are not held to the per-address limits or address bans.
    fn exempt(&self) -> bool {
        self.host || self.screen
    }
}

/// Whose ban state a change turned: the newly banned lose their queued requests, and the
/// votes of both stop or start counting.
#[derive(Debug, Default)]
pub(crate) struct BanDiff {
    pub added: Vec<GuestId>,
    pub lifted: Vec<GuestId>,
}

/// What a socket's hello changed.
#[derive(Debug, Default)]
pub(crate) struct Attached {
    /// An address this guest had not used: remember it.
    pub new_addr: Option<String>,
    /// A banned guest turned up on a new address: that address is banned too, until then.
    pub addr_ban: Option<(String, i64)>,
    pub bans: BanDiff,
}

/// What a host's ban or unban changed.
#[derive(Debug)]
pub(crate) enum BanChange {
    /// An unban of a guest that was not banned.
    Unchanged,
    /// `newly` unless the token was banned already; `addrs` are banned until `until`.
    Banned {
        newly: bool,
        addrs: Vec<String>,
        until: i64,
        bans: BanDiff,
    },
    /// The token's ban and every ban of these addresses are lifted.
    Unbanned { addrs: Vec<String>, bans: BanDiff },
}

/// A socket opened or closed.
#[derive(Debug)]
pub(crate) struct Presence {
    /// The guest's first socket ever: it is no longer pruned as unused.
    pub first: bool,
    /// Whether it went from offline to online or back.
    pub changed: bool,
}

#[derive(Default)]
pub(crate) struct Guests {
    by_id: HashMap<GuestId, Guest>,
    /// By the digest of the token (as stored).
    tokens: HashMap<String, GuestId>,
    /// Banned address keys: which guests' bans cover them, until when.
    addr_bans: HashMap<String, HashMap<GuestId, i64>>,
    /// Live sockets per address key and guest (guests only: hosts and screens are exempt).
    live_by_addr: HashMap<String, HashMap<GuestId, u32>>,
    /// Guests that never connected, oldest first: pruned once their time is up.
    never_connected: VecDeque<(i64, GuestId)>,
    /// Derived from the token bans and `addr_bans` (never a host); see the module doc.
    banned: HashSet<GuestId>,
    /// How many are [`Guests::in_room`], kept as they come and go: every snapshot and
    /// every skip vote asks, and counting them each time cost each phone joining a room of
    /// N the whole room (3,000 phones joining: 9 million looks).
    in_room: usize,
}

impl Guests {
    /// Replaces everything with what the store holds (at start, or after a failed write);
    /// the live sockets counted so far stay counted.
    pub(crate) fn load(
        &mut self,
        rows: Vec<GuestRow>,
        addrs: Vec<(GuestId, String)>,
        addr_bans: Vec<(String, GuestId, i64)>,
    ) {
        let sockets: HashMap<GuestId, u32> =
            self.by_id.iter().map(|(id, g)| (*id, g.sockets)).collect();
        self.by_id.clear();
        self.tokens.clear();
        self.never_connected.clear();
        let mut by_guest: HashMap<GuestId, HashSet<String>> = HashMap::new();
        for (g, a) in addrs {
            by_guest.entry(g).or_default().insert(a);
        }
        for g in rows {
            let sockets = sockets.get(&g.id).copied().unwrap_or(0);
            if !g.connected && !g.is_host && !g.is_screen && sockets == 0 {
                self.never_connected.push_back((g.created_ms, g.id));
            }
            self.tokens.insert(g.token.clone(), g.id);
            self.by_id.insert(
                g.id,
                Guest {
                    name: g.name,
                    host: g.is_host,
                    banned: g.banned,
                    screen: g.is_screen,
                    sockets,
                    connected_ever: g.connected || sockets > 0,
                    addrs: by_guest.remove(&g.id).unwrap_or_default(),
                    token: g.token,
                },
            );
        }
        self.addr_bans.clear();
        for (addr, g, until) in addr_bans {
            self.addr_bans.entry(addr).or_default().insert(g, until);
        }
        self.banned = self.derive_banned();
        self.recount();
    }

    fn recount(&mut self) {
        self.in_room = self.by_id.keys().filter(|id| self.in_room(**id)).count();
    }

    pub(crate) fn get(&self, id: GuestId) -> Option<&Guest> {
        self.by_id.get(&id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (GuestId, &Guest)> {
        self.by_id.iter().map(|(id, g)| (*id, g))
    }

    /// The guest a token belongs to.
    pub(crate) fn by_token(&self, token: &str) -> Option<GuestId> {
        self.tokens.get(&crate::store::token_digest(token)).copied()
    }

    /// A new guest, created at `created_ms`.
    pub(crate) fn add(&mut self, id: GuestId, guest: Guest, created_ms: i64) {
        if !guest.exempt() {
            self.never_connected.push_back((created_ms, id));
        }
        self.tokens.insert(guest.token.clone(), id);
        if self.in_room(id) {
            self.in_room -= 1;
        }
        self.by_id.insert(id, guest);
        if self.in_room(id) {
            self.in_room += 1;
        }
    }

    /// Forgets a guest (a pruned one, a removed screen): its token stops working.
    pub(crate) fn remove(&mut self, id: GuestId) -> Option<Guest> {
        if self.in_room(id) {
            self.in_room -= 1;
        }
        let g = self.by_id.remove(&id)?;
        self.tokens.remove(&g.token);
        self.banned.remove(&id);
        Some(g)
    }

    pub(crate) fn rename(&mut self, id: GuestId, name: String) {
        if let Some(g) = self.by_id.get_mut(&id) {
            g.name = name;
        }
    }

    pub(crate) fn display_name(&self, id: GuestId) -> String {
        match self.by_id.get(&id) {
            Some(g) if g.host && g.name.is_empty() => "Host".into(),
            Some(g) if !g.name.is_empty() => g.name.clone(),
            _ => format!("Guest {}", id.get()),
        }
    }

    pub(crate) fn is_host(&self, id: GuestId) -> bool {
        self.by_id.get(&id).is_some_and(|g| g.host)
    }

    /// Refused and not counted: banned by token, or seen on a banned address.
    pub(crate) fn is_banned(&self, id: GuestId) -> bool {
        self.banned.contains(&id)
    }

    pub(crate) fn banned(&self) -> &HashSet<GuestId> {
        &self.banned
    }

    /// In the room: a guest (not a screen) with a live socket, not banned.
    pub(crate) fn in_room(&self, id: GuestId) -> bool {
        self.by_id
            .get(&id)
            .is_some_and(|g| g.sockets > 0 && !g.screen && !self.banned.contains(&id))
    }

    /// Guests in the room right now.
    pub(crate) fn connected(&self) -> usize {
        debug_assert_eq!(
            self.in_room,
            self.by_id.keys().filter(|id| self.in_room(**id)).count(),
            "the count of guests in the room went wrong"
        );
        self.in_room
    }

    pub(crate) fn screens(&self) -> usize {
        self.by_id.values().filter(|g| g.screen).count()
    }

    pub(crate) fn identity(&self, id: GuestId) -> Option<Identity> {
        let g = self.by_id.get(&id)?;
        Some(Identity {
            guest_id: id,
            name: g.name.clone(),
            role: g.role(),
            banned: self.banned.contains(&id),
        })
    }

    /// May this guest vote, like, request or skip-vote? Not a screen, not banned (by token or
    /// address), and (hosts aside) only with a live socket: a token alone is not a guest.
    pub(crate) fn may_act(&self, id: GuestId) -> Result<(), HubError> {
        match self.by_id.get(&id) {
            None => Err(HubError::NotFound("guest")),
            Some(g) if g.host => Ok(()),
            Some(g) if g.screen => Err(HubError::Screen),
            Some(g) if g.banned => Err(HubError::Banned),
            Some(_) if self.banned.contains(&id) => Err(HubError::AddressBanned),
            Some(g) if g.sockets == 0 => Err(HubError::NotConnected),
            Some(_) => Ok(()),
        }
    }

    /// Whether a ban covers this address key at `now`.
    pub(crate) fn addr_banned(&self, key: &str, now: i64) -> bool {
        self.addr_bans
            .get(key)
            .is_some_and(|m| m.values().any(|until| *until > now))
    }

    /// A socket of `id` says hello from the address `key`: refused beyond `cap` guests on
    /// one address (hosts and screens aside); else counted there, and a new address is
    /// remembered. A banned guest's ban follows it to a new address, and a guest seen on a
    /// banned address is banned with it. The socket itself is counted by [`Guests::socket`].
    pub(crate) fn attach(
        &mut self,
        id: GuestId,
        key: Option<&str>,
        cap: u32,
        now: i64,
    ) -> Result<Attached, HubError> {
        let Some(g) = self.by_id.get_mut(&id) else {
            return Err(HubError::NotFound("guest"));
        };
        let exempt = g.exempt();
        let Some(k) = key else {
            return Ok(Attached::default());
        };
        if !exempt {
            let here = self.live_by_addr.get(k);
            let already = here.is_some_and(|m| m.contains_key(&id));
            if !already && here.map_or(0, HashMap::len) >= cap as usize {
                return Err(HubError::TooManyGuests(cap));
            }
        }
        let mut out = Attached::default();
        let new_addr = g.addrs.insert(k.to_string());
        let token_banned = g.banned;
        if new_addr {
            out.new_addr = Some(k.to_string());
        }
        if exempt {
            return Ok(out);
        }
        *self
            .live_by_addr
            .entry(k.to_string())
            .or_default()
            .entry(id)
            .or_default() += 1;
        if !new_addr {
            return Ok(out);
        }
        // A new DHCP lease, another access point: the ban goes along.
        if token_banned {
            let until = now + ADDRESS_BAN_MS;
            self.addr_bans
                .entry(k.to_string())
                .or_default()
                .insert(id, until);
            out.addr_ban = Some((k.to_string(), until));
        }
        if out.addr_ban.is_some() || (self.addr_banned(k, now) && !self.banned.contains(&id)) {
            out.bans = self.rederive();
        }
        Ok(out)
    }

    /// A socket counted by [`Guests::attach`] from `key` closed.
    pub(crate) fn detach(&mut self, id: GuestId, key: &str) {
        if let Some(m) = self.live_by_addr.get_mut(key) {
            if let Some(n) = m.get_mut(&id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&id);
                }
            }
            if m.is_empty() {
                self.live_by_addr.remove(key);
            }
        }
    }

    /// A socket of this guest opened or closed; `None` for an unknown guest.
    pub(crate) fn socket(&mut self, id: GuestId, open: bool) -> Option<Presence> {
        let g = self.by_id.get_mut(&id)?;
        let before = g.sockets > 0;
        let first = open && !g.connected_ever;
        if open {
            g.sockets += 1;
            g.connected_ever = true;
        } else {
            g.sockets = g.sockets.saturating_sub(1);
        }
        let changed = before != (g.sockets > 0);
        if changed && !g.screen && !self.banned.contains(&id) {
            if open {
                self.in_room += 1;
            } else {
                self.in_room -= 1;
            }
        }
        Some(Presence { first, changed })
    }

    /// The host bans (or unbans) a guest: the token, and for the night every address it
    /// used; an unban lifts the token's ban and every ban of its addresses.
    pub(crate) fn ban(&mut self, id: GuestId, on: bool, now: i64) -> Result<BanChange, HubError> {
        let g = self.by_id.get_mut(&id).ok_or(HubError::NotFound("guest"))?;
        if g.host {
            return Err(HubError::BadRequest {
                field: "guest_id",
                message: "the host cannot be banned".into(),
            });
        }
        if g.screen {
            return Err(HubError::BadRequest {
                field: "guest_id",
                message: "a screen cannot vote; remove it instead (remove_screen)".into(),
            });
        }
        let addrs: Vec<String> = g.addrs.iter().cloned().collect();
        if on {
            let until = now + ADDRESS_BAN_MS;
            let newly = !g.banned;
            g.banned = true;
            for a in &addrs {
                self.addr_bans
                    .entry(a.clone())
                    .or_default()
                    .insert(id, until);
            }
            Ok(BanChange::Banned {
                newly,
                addrs,
                until,
                bans: self.rederive(),
            })
        } else {
            if !g.banned && !self.banned.contains(&id) {
                return Ok(BanChange::Unchanged);
            }
            g.banned = false;
            for a in &addrs {
                self.addr_bans.remove(a);
            }
            Ok(BanChange::Unbanned {
                addrs,
                bans: self.rederive(),
            })
        }
    }

    /// Lets the address bans that are over at `now` go.
    pub(crate) fn expire_addr_bans(&mut self, now: i64) -> BanDiff {
        let before = self.addr_bans.len();
        self.addr_bans.retain(|_, m| {
            m.retain(|_, until| *until > now);
            !m.is_empty()
        });
        if self.addr_bans.len() == before {
            return BanDiff::default();
        }
        self.rederive()
    }

    /// When the oldest token that may never have connected was made (ms): the next one
    /// [`Guests::take_unused`] may take.
    pub(crate) fn oldest_unused_ms(&self) -> Option<i64> {
        self.never_connected.front().map(|(created, _)| *created)
    }

    /// Whether any address is banned (their bans expire).
    pub(crate) fn has_addr_bans(&self) -> bool {
        !self.addr_bans.is_empty()
    }

    /// Takes the guests whose token is older than `ttl` at `now` and that never connected
    /// (so never voted, liked or requested: all of that needs a live socket). The caller
    /// removes those nothing refers to; the others are not looked at again.
    pub(crate) fn take_unused(&mut self, now: i64, ttl: i64) -> Vec<GuestId> {
        let mut out = Vec::new();
        while let Some(&(created, id)) = self.never_connected.front() {
            if now - created < ttl {
                break;
            }
            self.never_connected.pop_front();
            let unused = self
                .by_id
                .get(&id)
                .is_some_and(|g| !g.connected_ever && g.sockets == 0 && !g.exempt() && !g.banned);
            if unused {
                out.push(id);
            }
        }
        out
    }

    /// The guests the ban set should hold: banned by the host, or seen on a banned address.
    fn derive_banned(&self) -> HashSet<GuestId> {
        self.by_id
            .iter()
            .filter(|(_, g)| {
                !g.host && (g.banned || g.addrs.iter().any(|a| self.addr_bans.contains_key(a)))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    fn rederive(&mut self) -> BanDiff {
        let new = self.derive_banned();
        let diff = BanDiff {
            added: new.difference(&self.banned).copied().collect(),
            lifted: self.banned.difference(&new).copied().collect(),
        };
        self.banned = new;
        self.recount();
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests number their guests; this is guest `n`'s id.
    fn gid(n: i64) -> GuestId {
        GuestId::new(n)
    }

    fn row(id: i64, host: bool) -> GuestRow {
        GuestRow {
            id: gid(id),
            token: format!("digest-{id}"),
            name: format!("g{id}"),
            is_host: host,
            banned: false,
            is_screen: false,
            created_ms: 0,
            connected: true,
        }
    }

    fn party() -> Guests {
        let mut g = Guests::default();
        g.load(
            vec![row(1, false), row(2, false), row(3, true)],
            vec![],
            vec![],
        );
        for id in [1, 2, 3] {
            g.socket(gid(id), true);
        }
        g
    }

    #[test]
    fn a_ban_follows_the_guest_to_a_new_address_and_covers_others_seen_there() {
        let mut g = party();
        g.attach(gid(1), Some("10.0.0.1"), 4, 0).unwrap();
        let BanChange::Banned { bans, .. } = g.ban(gid(1), true, 0).unwrap() else {
            panic!()
        };
        assert_eq!(bans.added, vec![gid(1)]);
        assert_eq!(g.may_act(gid(1)), Err(HubError::Banned));
        // Guest 2 turns up on the banned address: banned with it.
        let a = g.attach(gid(2), Some("10.0.0.1"), 4, 1).unwrap();
        assert_eq!(a.bans.added, vec![gid(2)]);
        assert_eq!(g.may_act(gid(2)), Err(HubError::AddressBanned));
        // Guest 1 moves to a new address: the ban goes along.
        let a = g.attach(gid(1), Some("10.0.0.7"), 4, 2).unwrap();
        assert_eq!(a.addr_ban.map(|(k, _)| k).as_deref(), Some("10.0.0.7"));
        assert!(g.addr_banned("10.0.0.7", 3));
        // The unban lifts both, and the set follows.
        let BanChange::Unbanned { bans, .. } = g.ban(gid(1), false, 4).unwrap() else {
            panic!()
        };
        let mut lifted = bans.lifted;
        lifted.sort();
        assert_eq!(lifted, vec![gid(1), gid(2)]);
        assert!(g.banned().is_empty());
        assert!(matches!(
            g.ban(gid(1), false, 5).unwrap(),
            BanChange::Unchanged
        ));
    }

    #[test]
    fn address_bans_end_with_the_night_and_hosts_are_never_banned() {
        let mut g = party();
        g.attach(gid(1), Some("a"), 4, 0).unwrap();
        g.attach(gid(2), Some("a"), 4, 0).unwrap();
        g.attach(gid(3), Some("a"), 4, 0).unwrap();
        g.ban(gid(1), true, 0).unwrap();
        assert!(g.is_banned(gid(2)) && !g.is_banned(gid(3)));
        assert!(g.ban(gid(3), true, 0).is_err());
        assert!(g.expire_addr_bans(ADDRESS_BAN_MS - 1).lifted.is_empty());
        let diff = g.expire_addr_bans(ADDRESS_BAN_MS);
        assert_eq!(diff.lifted, vec![gid(2)], "the token ban stays");
        assert!(g.is_banned(gid(1)));
    }

    #[test]
    fn the_per_address_cap_counts_guests_not_sockets_and_not_hosts() {
        let mut g = party();
        g.attach(gid(1), Some("a"), 1, 0).unwrap();
        g.attach(gid(1), Some("a"), 1, 0).unwrap();
        assert_eq!(
            g.attach(gid(2), Some("a"), 1, 0).unwrap_err(),
            HubError::TooManyGuests(1)
        );
        g.attach(gid(3), Some("a"), 1, 0).unwrap();
        g.detach(gid(1), "a");
        assert!(
            g.attach(gid(2), Some("a"), 1, 0).is_err(),
            "one socket still open"
        );
        g.detach(gid(1), "a");
        g.attach(gid(2), Some("a"), 1, 0).unwrap();
    }

    #[test]
    fn presence_changes_only_on_the_first_and_last_socket() {
        let mut g = Guests::default();
        let mut r = row(1, false);
        r.connected = false;
        g.load(vec![r], vec![], vec![]);
        let p = g.socket(gid(1), true).unwrap();
        assert!(p.first && p.changed);
        let p = g.socket(gid(1), true).unwrap();
        assert!(!p.first && !p.changed);
        assert!(!g.socket(gid(1), false).unwrap().changed);
        assert!(g.socket(gid(1), false).unwrap().changed);
        assert!(g.socket(gid(9), true).is_none());
        assert_eq!(g.connected(), 0);
    }

    #[test]
    fn only_guests_that_never_connected_are_taken_as_unused_once_their_time_is_up() {
        let mut g = Guests::default();
        g.add(
            gid(1),
            Guest::new("a".into(), false, false, "t1".into(), None),
            0,
        );
        g.add(
            gid(2),
            Guest::new("b".into(), false, false, "t2".into(), None),
            0,
        );
        g.add(
            gid(3),
            Guest::new("h".into(), true, false, "t3".into(), None),
            0,
        );
        g.socket(gid(2), true);
        assert!(g.take_unused(999, 1000).is_empty());
        assert_eq!(g.take_unused(1000, 1000), vec![gid(1)]);
        assert!(g.take_unused(5000, 1000).is_empty(), "looked at once");
        assert!(g.remove(gid(1)).is_some());
        assert_eq!(g.by_token("x"), None);
    }
}
