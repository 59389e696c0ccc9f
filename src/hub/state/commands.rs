//! Commands: the dispatch (who may do what), and the party's actions: likes, skip votes,
//! requests, votes, and the host's queue edits and messages.

use std::collections::HashSet;

use super::{wait_ms, Internal, ReplyTx, State};
use crate::hub::queue::Queued;
use crate::hub::views::*;
use crate::hub::{Actor, Command, HubError, Reply};
use crate::party::{self, Admission, Entry, EntryId, GuestId, PlayId, TrackId};
use crate::store::{RequestState, Track};

impl State {
    pub(super) fn on_command(&mut self, cmd: Command, reply: Option<ReplyTx>, now_ms: i64) {
        if let Command::Request {
            actor,
            track_id,
            dedication,
        } = cmd
        {
            // Answers later, once the store has looked the track up.
            self.request(actor, track_id, dedication, reply);
            return;
        }
        let result = self.command(cmd, now_ms);
        self.answer(reply, result);
    }

    fn command(&mut self, cmd: Command, now_ms: i64) -> Result<Reply, HubError> {
        match cmd {
            Command::CreateGuest { name, host } => {
                let name = crate::hub::names::validate_name(name.as_deref().unwrap_or(""), host)?;
                Ok(Reply::Guest(
                    self.create_guest(name, host, false, None, now_ms),
                ))
            }
            Command::NewGuest { name, addr } => self.new_guest(name, addr, now_ms),
            Command::Authenticate { token } => Ok(Reply::Identity(
                self.guests
                    .by_token(&token)
                    .and_then(|id| self.guests.identity(id)),
            )),
            Command::Connect { token, addr } => self.connect(&token, addr, now_ms),
            Command::StartPairing => {
                let (code, claim) = self.pairings.start(now_ms);
                Ok(Reply::Pairing {
                    code,
                    claim,
                    expires_in_ms: crate::hub::pairing::PAIRING_MS as u64,
                })
            }
            Command::PairScreen { host: _, code } => self.pair_screen(&code, now_ms),
            Command::ClaimScreen { claim } => self.claim_screen(&claim, now_ms),
            Command::RemoveScreen { host: _, guest } => self.remove_screen(guest),
            Command::SetName { actor, name } => self.set_name(actor, &name, now_ms),
            Command::Like { actor, play_id, on } => self.like(actor, play_id, on, now_ms),
            Command::VoteSkip { actor, play_id } => self.vote_skip(actor, play_id, now_ms),
            Command::Request { .. } => Err(HubError::Internal("request out of band".into())),
            Command::Vote {
                actor,
                entry_id,
                on,
            } => self.vote(actor, entry_id, on, now_ms),
            Command::Snapshot {
                guest,
                admin,
                history,
            } => Ok(Reply::Snapshot(Box::new(
                self.snapshot(guest, admin, history, now_ms),
            ))),
            Command::Status => Ok(Reply::Status(self.status())),
            Command::Rooms(rooms) => {
                if let Some(old) = &self.rooms {
                    self.out.extend(rooms.changes_from(old));
                }
                self.rooms = Some(*rooms);
                Ok(Reply::Done)
            }
            // The host's: a `Host` proves who sent them (see `hub::api`).
            Command::Play { host: _ } => self.play(now_ms),
            Command::Pause { host: _ } => self.pause(now_ms),
            Command::Skip { host: _, play_id } => {
                if let Some(id) = play_id {
                    self.current_play(id)?;
                }
                self.skip_now(SkipReason::Host, now_ms);
                Ok(Reply::Done)
            }
            Command::Seek {
                host: _,
                position_ms,
            } => self.seek(position_ms, now_ms),
            Command::SetVolume { host: _, volume } => self.set_volume(volume, now_ms),
            Command::Remove { host: _, entry_id } => self.remove(entry_id, now_ms),
            Command::Move {
                host: _,
                entry_id,
                to,
            } => self.move_entry(entry_id, to, now_ms),
            Command::Ban { host: _, guest, on } => self.ban(guest, on, now_ms),
            Command::Settings { host: _, patch } => self.change_settings(patch, now_ms),
            Command::Announce { host: _, text } => self.announce(&text, now_ms),
            Command::Rescan { host: _ } => {
                self.start_scan();
                Ok(Reply::Done)
            }
        }
    }

    /// Whether the actor's requests are the host's (exempt from the guests' request rules).
    fn acts_as_host(&self, actor: Actor) -> bool {
        actor.host || self.guests.is_host(actor.guest)
    }

    /// One more like or vote change of this guest, if its budget allows (hosts are exempt).
    fn toggle_ok(&self, g: GuestId) -> Result<(), HubError> {
        if self.guests.is_host(g) {
            return Ok(());
        }
        self.toggles
            .check_key(&g)
            .map_err(|n| HubError::RateLimited {
                message: "slow down: too many changes at once",
                retry_after_ms: wait_ms(n),
            })
    }

    fn current_play(&self, play_id: PlayId) -> Result<(), HubError> {
        match self.deck.now() {
            Some(n) if n.play_id == play_id => Ok(()),
            _ => Err(HubError::StalePlay),
        }
    }

    fn like(
        &mut self,
        actor: Actor,
        play_id: PlayId,
        on: bool,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        self.guests.may_act(actor.guest)?;
        self.current_play(play_id)?;
        let g = actor.guest;
        let by = self.guests.display_name(g);
        let by_host = self.guests.is_host(g);
        let would_change = self.deck.now().is_some_and(|n| n.likes.contains(&g) != on);
        if would_change {
            self.toggle_ok(g)?;
        }
        let Some(n) = self.deck.now_mut() else {
            return Err(HubError::StalePlay);
        };
        let changed = if on {
            n.likes.insert(g)
        } else {
            n.likes.remove(&g)
        };
        if !changed {
            return Ok(Reply::Done);
        }
        let (track_id, requester) = (n.track.id, n.requester);
        let first_like = on && n.like_announced.insert(g);
        self.op(move |db| db.set_like(play_id, track_id, g, on, now_ms));
        // One like-caused `now_playing` a tick: the first like of a tick goes out at once
        // (its reply follows it); the rest of a burst goes out with the next tick, as one.
        if self.liked_this_tick {
            self.now_dirty = true;
        } else {
            self.liked_this_tick = true;
            self.push_now(now_ms);
        }
        self.push_me(g);
        if first_like {
            let liked = Event::Liked {
                play_id,
                track_id,
                by: by.clone(),
                by_id: g,
                by_host,
            };
            self.push_event(None, liked, now_ms);
            if let Some(r) = requester.filter(|r| *r != g) {
                let yours = Event::YourRequestLiked {
                    play_id,
                    track_id,
                    by,
                    by_id: g,
                    by_host,
                };
                self.push_event(Some(r), yours, now_ms);
            }
        }
        Ok(Reply::Done)
    }

    fn vote_skip(&mut self, actor: Actor, play_id: PlayId, now_ms: i64) -> Result<Reply, HubError> {
        self.guests.may_act(actor.guest)?;
        self.current_play(play_id)?;
        let g = actor.guest;
        let by = self.guests.display_name(g);
        let by_host = self.guests.is_host(g);
        let Some(n) = self.deck.now_mut() else {
            return Err(HubError::StalePlay);
        };
        if !n.skip_votes.insert(g) {
            return Ok(Reply::Done);
        }
        let votes = self.deck.now().map_or(0, |n| self.skip_votes_now(n));
        let needed = self.skip_needed();
        self.op(move |db| db.add_skip_vote(play_id, g));
        self.push_me(g);
        let ev = Event::SkipVote {
            play_id,
            votes,
            needed,
            by,
            by_id: g,
            by_host,
        };
        self.push_event(None, ev, now_ms);
        if !self.check_skip(now_ms) {
            self.push_now(now_ms);
        }
        Ok(Reply::Done)
    }

    /// Skips the current play when its skip votes reached the threshold. True if it did.
    pub(super) fn check_skip(&mut self, now_ms: i64) -> bool {
        let Some(n) = self.deck.now() else {
            return false;
        };
        let votes = self.skip_votes_now(n);
        if votes > 0 && votes >= self.skip_needed() {
            self.skip_now(SkipReason::Votes, now_ms);
            true
        } else {
            false
        }
    }

    fn request(
        &mut self,
        actor: Actor,
        track_id: TrackId,
        dedication: Option<String>,
        reply: Option<ReplyTx>,
    ) {
        if let Err(e) = self.guests.may_act(actor.guest) {
            self.answer(reply, Err(e));
            return;
        }
        let dedication = match party::dedication(dedication.as_deref()) {
            Ok(d) => d,
            Err(message) => {
                let e = HubError::BadRequest {
                    field: "for",
                    message,
                };
                self.answer(reply, Err(e));
                return;
            }
        };
        // The library lives in the store; look the track up there and continue when it answers.
        let internal = self.internal.clone();
        let _ = self.store.queue_read(move |db| {
            let track = db.track(track_id).map_err(|e| e.to_string());
            let _ = internal.send(Internal::RequestTrack {
                actor,
                track_id,
                dedication,
                track,
                reply,
            });
        });
    }

    pub(super) fn request_with_track(
        &mut self,
        actor: Actor,
        track: Option<Track>,
        dedication: Option<String>,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        self.guests.may_act(actor.guest)?;
        let is_host = self.acts_as_host(actor);
        let track = track.filter(|t| t.present && !self.deck.unplayable().contains(&t.id));
        let entries = self.queue.entries();
        let ctx = party::RequestCtx {
            settings: &self.settings,
            guest: if is_host { None } else { Some(actor.guest) },
            banned: self.guests.banned(),
            track: track.as_ref().map(|t| (t.id, t.facts())),
            rules: &self.rules,
            queue: &entries,
            playing: self.deck.now().map(|n| n.track.id),
            recent: &self.recent,
            now_ms,
        };
        let admission = party::admit_request(&ctx).map_err(HubError::Refused)?;
        let Some(track) = track else {
            return Err(HubError::NotFound("track"));
        };
        let g = actor.guest;
        match admission {
            Admission::UpVote(id) => {
                let q = self.queue.get_mut(id).ok_or(HubError::NotFound("entry"))?;
                if q.entry.voters.insert(g) {
                    self.op(move |db| db.add_vote(id, g));
                    self.push_entry(id);
                    self.reorder(now_ms);
                    self.push_me(g);
                }
                Ok(Reply::Requested {
                    entry_id: id,
                    upvoted: true,
                })
            }
            Admission::NewEntry => {
                let id = self.ids.next_request();
                let entry = Entry {
                    id,
                    track_id: track.id,
                    artist: track.artist.clone(),
                    guest: Some(g),
                    created_ms: now_ms,
                    voters: [g].into_iter().collect(),
                    pin: None,
                    dedication: dedication.clone(),
                };
                let row = entry.clone();
                self.op(move |db| db.insert_request(&row));
                let ev = Event::Requested {
                    entry_id: id,
                    track_id: track.id,
                    title: track.title.clone(),
                    artist: track.artist.clone(),
                    by: Some(self.guests.display_name(g)),
                    by_id: Some(g),
                    by_host: self.guests.is_host(g),
                    dedication,
                };
                self.queue.insert(Queued { entry, track });
                self.push_entry(id);
                self.reorder(now_ms);
                self.push_me(g);
                self.push_guest(g);
                self.push_event(None, ev, now_ms);
                if !self.deck.busy() {
                    self.advance(now_ms);
                }
                Ok(Reply::Requested {
                    entry_id: id,
                    upvoted: false,
                })
            }
        }
    }

    fn vote(
        &mut self,
        actor: Actor,
        entry_id: EntryId,
        on: bool,
        now_ms: i64,
    ) -> Result<Reply, HubError> {
        self.guests.may_act(actor.guest)?;
        let g = actor.guest;
        let q = self
            .queue
            .get(entry_id)
            .ok_or(HubError::NotFound("entry"))?;
        if !on && q.entry.guest == Some(g) {
            return Err(HubError::BadRequest {
                field: "on",
                message: "your own request always keeps your vote".into(),
            });
        }
        if q.entry.voters.contains(&g) != on {
            self.toggle_ok(g)?;
        }
        let Some(q) = self.queue.get_mut(entry_id) else {
            return Err(HubError::NotFound("entry"));
        };
        let changed = if on {
            q.entry.voters.insert(g)
        } else {
            q.entry.voters.remove(&g)
        };
        if changed {
            if on {
                self.op(move |db| db.add_vote(entry_id, g));
            } else {
                self.op(move |db| db.remove_vote(entry_id, g));
            }
            self.push_entry(entry_id);
            self.reorder(now_ms);
            self.push_me(g);
        }
        Ok(Reply::Done)
    }

    /// Takes an entry out of the queue, ended as `state` (the caller reorders).
    pub(super) fn remove_entry(
        &mut self,
        id: EntryId,
        state: RequestState,
        now_ms: i64,
    ) -> Option<Queued> {
        let q = self.queue.remove(id)?;
        self.op(move |db| db.end_request(id, state, now_ms));
        self.push_entry(id);
        Some(q)
    }

    fn remove(&mut self, entry_id: EntryId, now_ms: i64) -> Result<Reply, HubError> {
        let q = self
            .remove_entry(entry_id, RequestState::Removed, now_ms)
            .ok_or(HubError::NotFound("entry"))?;
        self.reorder(now_ms);
        if let Some(g) = q.entry.guest {
            self.push_me(g);
            self.push_guest(g);
        }
        for v in q.entry.voters {
            if Some(v) != q.entry.guest {
                self.push_me(v);
            }
        }
        Ok(Reply::Done)
    }

    fn move_entry(&mut self, entry_id: EntryId, to: usize, now_ms: i64) -> Result<Reply, HubError> {
        let pins = party::move_entry(self.queue.order(), &self.queue.pinned(), entry_id, to)
            .ok_or(HubError::NotFound("entry"))?;
        for (id, pin) in pins {
            if let Some(q) = self.queue.get_mut(id) {
                if q.entry.pin != Some(pin) {
                    let was_pinned = q.entry.pin.is_some();
                    q.entry.pin = Some(pin);
                    self.op(move |db| db.set_pin(id, Some(pin)));
                    if !was_pinned {
                        self.push_entry(id);
                    }
                }
            }
        }
        self.reorder(now_ms);
        Ok(Reply::Done)
    }

    fn announce(&mut self, text: &str, now_ms: i64) -> Result<Reply, HubError> {
        let text = text.trim();
        let n = text.chars().count();
        if n == 0 || n > 280 {
            return Err(HubError::BadRequest {
                field: "text",
                message: "1 to 280 characters".into(),
            });
        }
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(HubError::BadRequest {
                field: "text",
                message: "control characters are not allowed".into(),
            });
        }
        let ev = Event::HostMessage {
            text: text.to_string(),
        };
        self.push_event(None, ev, now_ms);
        Ok(Reply::Done)
    }

    /// Guests who liked or skip-voted a play that ended get their (now empty) lists.
    pub(super) fn forget_play(&mut self, likes: &HashSet<GuestId>, skips: &HashSet<GuestId>) {
        let touched: HashSet<GuestId> = likes.union(skips).copied().collect();
        for g in touched {
            self.push_me(g);
        }
    }
}
