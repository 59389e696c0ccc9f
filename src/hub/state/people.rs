//! Identities and presence: new guests and their tokens, sockets saying hello and leaving,
//! names, TV screens, bans, and the presence tick that announces who is in the room.

use rand::Rng;

use super::{wait_ms, State};
use crate::hub::guests::{BanChange, BanDiff, Guest};
use crate::hub::names::validate_name;
use crate::hub::pairing::Claimed;
use crate::hub::{address_key, Actor, GuestCreated, HubError, Reply};
use crate::party::{EntryId, GuestId};
use crate::store::{GuestRow, RequestState};

impl State {
    /// `POST /api/guest`: no token for a banned address, and no more than the global rate.
    pub(super) fn new_guest(
        &mut self,
        name: Option<String>,
        addr: std::net::IpAddr,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        let key = Some(addr)
            .filter(|a| !crate::addr::is_own(*a))
            .map(address_key);
        if key
            .as_deref()
            .is_some_and(|k| self.guests.addr_banned(k, now_ms))
        {
            return Err(HubError::AddressBanned);
        }
        let name = validate_name(name.as_deref().unwrap_or(""), false)?;
        self.new_guests.check().map_err(|n| HubError::RateLimited {
            message: "many guests are joining right now; try again in a moment",
            retry_after_ms: wait_ms(n),
        })?;
        Ok(Reply::Guest(
            self.create_guest(name, false, false, key, now_ms),
        ))
    }

    /// A socket says hello: who it is, whether its address may take part, and (if so) it is
    /// counted at once, so two sockets racing cannot both take the last place.
    pub(super) fn connect(
        &mut self,
        token: &str,
        addr: Option<std::net::IpAddr>,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        let Some(id) = self.guests.by_token(token) else {
            return Ok(Reply::Identity(None));
        };
        let key = addr.filter(|a| !crate::addr::is_own(*a)).map(address_key);
        let cap = self.limits.guests_per_address;
        let attached = self.guests.attach(id, key.as_deref(), cap, now_ms)?;
        if let Some(k) = attached.new_addr {
            self.op(move |db| db.add_guest_address(id, &k, now_ms));
        }
        if let Some((k, until)) = attached.addr_ban {
            self.op(move |db| db.ban_address(&k, id, until, now_ms));
        }
        self.bans_changed(attached.bans, now_ms);
        self.socket_opened(id, now_ms);
        Ok(Reply::Identity(self.guests.identity(id)))
    }

    pub(super) fn create_guest(
        &mut self,
        name: String,
        host: bool,
        screen: bool,
        addr: Option<String>,
        now_ms: i64,
    ) -> GuestCreated {
        let id = self.ids.next_guest();
        let mut rng = rand::rng();
        let token = format!("{:032x}{:032x}", rng.random::<u128>(), rng.random::<u128>());
        let digest = crate::store::token_digest(&token);
        let row = GuestRow {
            id,
            token: digest.clone(),
            name: name.clone(),
            is_host: host,
            banned: false,
            is_screen: screen,
            created_ms: now_ms,
            connected: false,
        };
        self.op(move |db| db.insert_guest(&row, now_ms));
        if let Some(a) = addr.clone() {
            self.op(move |db| db.add_guest_address(id, &a, now_ms));
        }
        let guest = Guest::new(name.clone(), host, screen, digest, addr);
        self.guests.add(id, guest, now_ms);
        self.push_guest(id);
        GuestCreated {
            guest_id: id,
            token,
            name,
        }
    }

    pub(super) fn pair_screen(&mut self, code: &str, now_ms: i64) -> Result<Reply, HubError> {
        if !self.pairings.waiting(code, now_ms) {
            return Err(HubError::NotFound(
                "pairing code (it may have expired: the TV shows a new one)",
            ));
        }
        let n = self.guests.screens() + 1;
        let created = self.create_guest(format!("Screen {n}"), false, true, None, now_ms);
        let guest_id = created.guest_id;
        self.pairings.paired(code, created);
        Ok(Reply::Paired { guest_id })
    }

    pub(super) fn claim_screen(&mut self, claim: &str, now_ms: i64) -> Result<Reply, HubError> {
        match self.pairings.claim(claim, now_ms) {
            Claimed::Paired(g) => Ok(Reply::Guest(g)),
            Claimed::Pending => Ok(Reply::PairingPending),
            Claimed::Unknown => Err(HubError::NotFound("pairing")),
        }
    }

    pub(super) fn remove_screen(&mut self, g: GuestId) -> Result<Reply, HubError> {
        if !self.guests.get(g).is_some_and(|x| x.screen) {
            return Err(HubError::NotFound("screen"));
        }
        self.guests.remove(g);
        self.op(move |db| db.delete_screen(g));
        self.push_guest_gone(g);
        Ok(Reply::Done)
    }

    pub(super) fn set_name(
        &mut self,
        actor: Actor,
        name: &str,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        self.guests.may_act(actor.guest)?;
        let name = validate_name(name, self.guests.is_host(actor.guest))?;
        let g = actor.guest;
        self.guests.rename(g, name.clone());
        self.op(move |db| db.set_guest_name(g, &name));
        self.push_me(g);
        self.push_guest(g);
        for id in self.queue.requested_by(g) {
            self.push_entry(id);
        }
        if self.deck.now().is_some_and(|n| n.requester == Some(g)) {
            self.push_now(now_ms);
        }
        Ok(Reply::Done)
    }

    fn socket_opened(&mut self, g: GuestId, now_ms: i64) {
        self.socket(g, true, now_ms);
    }

    /// A socket closed, from the address key `addr` (as counted by `connect`).
    pub(super) fn socket_closed(&mut self, g: GuestId, addr: Option<String>, now_ms: i64) {
        if let Some(k) = addr {
            self.guests.detach(g, &k);
        }
        self.socket(g, false, now_ms);
    }

    fn socket(&mut self, g: GuestId, open: bool, now_ms: i64) {
        let Some(p) = self.guests.socket(g, open) else {
            return;
        };
        if p.first {
            self.op(move |db| db.set_connected(g, now_ms));
        }
        if p.changed {
            // Announced on the next presence tick: when a room fills up (or Wi-Fi drops
            // everyone), one update tells everybody instead of one per phone.
            self.presence_dirty.insert(g);
        }
    }

    /// The presence tick (armed only while something waits for it, see [`State::tick_needed`]):
    /// publishes the presence changes gathered since the last one, the like count if it
    /// changed (a burst of likes is one `now_playing`), and the host's sound view.
    pub(super) fn flush_presence(&mut self, now_ms: i64) {
        self.prune_unused(now_ms);
        if !self.presence_dirty.is_empty() {
            let changed: Vec<GuestId> = self.presence_dirty.drain().collect();
            for g in changed {
                self.push_guest(g);
            }
            self.push_room();
        }
        // Likes held back in the last tick go out now, and count as this tick's.
        self.liked_this_tick = self.now_dirty;
        if let Some(n) = self.deck.now() {
            let (needed, votes) = (self.skip_needed(), self.skip_votes_now(n));
            let changed = needed != self.announced_skip_needed
                || votes != self.announced_skip_votes
                || self.now_dirty;
            if !self.check_skip(now_ms) && changed {
                self.push_now(now_ms);
            }
        }
        self.now_dirty = false;
        if self.sound_dirty {
            self.push_sound();
        }
        self.finish(None, Ok(Reply::Done));
    }

    /// Whether the presence tick has something to do: presence changes to announce, likes
    /// held back, a like announced in this tick (the next one must come first), the sound.
    pub(super) fn tick_needed(&self) -> bool {
        !self.presence_dirty.is_empty()
            || self.now_dirty
            || self.liked_this_tick
            || self.sound_dirty
    }

    /// The slow chores (about once a minute, while there is something for them): the like
    /// limiter forgets idle guests, and expired address bans go.
    pub(super) fn chores(&mut self, now_ms: i64) {
        self.toggles.retain_recent();
        self.toggles.shrink_to_fit();
        let diff = self.guests.expire_addr_bans(now_ms);
        self.bans_changed(diff, now_ms);
        self.prune_unused(now_ms);
        self.finish(None, Ok(Reply::Done));
    }

    /// Whether the slow chores have anything to look at.
    pub(super) fn chores_needed(&self) -> bool {
        !self.toggles.is_empty() || self.guests.has_addr_bans()
    }

    /// When the oldest guest token that never connected is due to be pruned (wall ms).
    pub(super) fn next_prune_ms(&self) -> Option<i64> {
        let ttl = self.limits.unused_guest_ttl.as_millis() as i64;
        self.guests.oldest_unused_ms().map(|created| created + ttl)
    }

    /// Prunes the guest tokens that are due (at a wake-up for them).
    pub(super) fn prune_due(&mut self, now_ms: i64) {
        self.prune_unused(now_ms);
        self.finish(None, Ok(Reply::Done));
    }

    /// Deletes guests whose token is older than `unused_guest_ttl` and that never connected,
    /// unless something refers to them.
    fn prune_unused(&mut self, now_ms: i64) {
        let ttl = self.limits.unused_guest_ttl.as_millis() as i64;
        for g in self.guests.take_unused(now_ms, ttl) {
            let referenced = self.queue.mentions(g)
                || self.deck.now().is_some_and(|n| {
                    n.likes.contains(&g) || n.skip_votes.contains(&g) || n.requester == Some(g)
                })
                || self.played_tonight.contains_key(&g);
            if referenced {
                continue;
            }
            self.guests.remove(g);
            self.op(move |db| db.delete_unused_guest(g).map(|_| ()));
            self.push_guest_gone(g);
        }
    }

    /// A ban covers the guest's token and, for the night, every address it used: no new
    /// token from there, and every other guest seen there is banned with it. An unban lifts
    /// the token's ban and every ban of its addresses.
    pub(super) fn ban(
        &mut self,
        target: GuestId,
        on: bool,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        let diff = match self.guests.ban(target, on, now_ms)? {
            BanChange::Unchanged => return Ok(Reply::Done),
            BanChange::Banned {
                newly,
                addrs,
                until,
                bans,
            } => {
                if newly {
                    self.op(move |db| db.set_banned(target, true));
                }
                for a in addrs {
                    self.op(move |db| db.ban_address(&a, target, until, now_ms));
                }
                bans
            }
            BanChange::Unbanned { addrs, bans } => {
                self.op(move |db| db.set_banned(target, false));
                self.op(move |db| db.unban_addresses(&addrs));
                bans
            }
        };
        self.bans_changed(diff, now_ms);
        self.push_me(target);
        self.push_guest(target);
        Ok(Reply::Done)
    }

    /// Applies who became banned or unbanned: the newly banned lose their queued requests,
    /// and everyone's votes stop or start counting.
    fn bans_changed(&mut self, diff: BanDiff, now_ms: i64) {
        if diff.added.is_empty() && diff.lifted.is_empty() {
            return;
        }
        for g in &diff.added {
            for id in self.queue.requested_by(*g) {
                self.remove_entry(id, RequestState::Removed, now_ms);
            }
        }
        let touched: std::collections::HashSet<GuestId> = diff
            .added
            .iter()
            .chain(diff.lifted.iter())
            .copied()
            .collect();
        let voted: Vec<EntryId> = self.queue.voted_by_any(&touched);
        for id in voted {
            self.push_entry(id);
        }
        self.reorder(now_ms);
        for g in touched {
            self.push_me(g);
            self.push_guest(g);
        }
        self.push_room();
        if !self.check_skip(now_ms) && self.deck.now().is_some() {
            self.push_now(now_ms);
        }
    }
}
