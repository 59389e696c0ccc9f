//! The loop: one message at a time, each handled under a panic guard, its writes and changes
//! handed to the store together; a resync from the store after a failed write.
//!
//! Timers are armed only when something is due ([`Timers`]): an idle party (paused, no
//! phones) wakes the process for nothing, where a fixed tick woke it four times a second.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{wall_clock_ms, Internal, ReplyTx, State, PRESENCE_TICK};
use crate::hub::loaded::Loaded;
use crate::hub::views::Change;
use crate::hub::{Answer, Envelope, HubError, Reply};
use crate::party::{EntryId, GuestId};

impl State {
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Envelope>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut player_events = self.player_events.take().expect("player events");
        self.kick(wall_clock_ms());
        self.finish(None, Ok(Reply::Done));
        // In the background, after playback resumed.
        self.start_scan();
        let mut timers = Timers::default();
        loop {
            let wake = timers.arm(&self, Instant::now(), wall_clock_ms());
            tokio::select! {
                biased;
                Some(msg) = internal.recv() => {
                    let now_ms = wall_clock_ms();
                    if let Internal::Shutdown(done) = msg {
                        self.shutdown(now_ms).await;
                        let _ = done.send(());
                        return;
                    }
                    self.guarded(None, |s| s.on_internal(msg, now_ms));
                }
                Some(ev) = player_events.recv() => {
                    let now_ms = wall_clock_ms();
                    self.guarded(None, |s| s.on_player(ev, now_ms));
                }
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    if let Some(w) = &mut self.watchdog {
                        w.tick();
                    }
                    let now_ms = wall_clock_ms();
                    let due = timers.take_due(Instant::now());
                    if due.tick {
                        self.guarded(None, |s| s.flush_presence(now_ms));
                    }
                    if due.chores {
                        self.guarded(None, |s| s.chores(now_ms));
                    }
                    if due.prune {
                        self.guarded(None, |s| s.prune_due(now_ms));
                    }
                }
                env = rx.recv() => match env {
                    Some(Envelope { cmd, reply }) => {
                        let now_ms = wall_clock_ms();
                        let reply = std::sync::Mutex::new(Some(reply));
                        self.guarded(Some(&reply), |s| {
                            let r = reply.lock().unwrap_or_else(|e| e.into_inner()).take();
                            s.on_command(cmd, r, now_ms)
                        });
                    }
                    None => {
                        self.shutdown(wall_clock_ms()).await;
                        return;
                    }
                },
            }
            if self.needs_resync {
                self.resync(wall_clock_ms()).await;
            }
        }
    }

    /// Runs a handler; a panic in it is logged, answered as an internal error, and followed
    /// by a resync from the store, instead of silently killing the hub.
    fn guarded(
        &mut self,
        reply: Option<&std::sync::Mutex<Option<ReplyTx>>>,
        f: impl FnOnce(&mut State),
    ) {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if res.is_err() {
            tracing::error!("a hub handler panicked; resynchronising from the database");
            self.ops.clear();
            self.out.clear();
            if let Some(r) = reply.and_then(|m| m.lock().unwrap_or_else(|e| e.into_inner()).take())
            {
                let _ = r.send(Answer {
                    result: Err(HubError::Internal("the command failed".into())),
                    after_seq: self.publisher.last_seq(),
                });
            }
            self.needs_resync = true;
        }
    }

    async fn shutdown(&mut self, now_ms: i64) {
        self.scan.cancel();
        // The pass holds a store handle until its thread ends; what it measured is kept.
        if let Some(pass) = self.pass.take() {
            let _ = tokio::task::spawn_blocking(move || pass.stop()).await;
        }
        if let Some(now) = self.deck.now() {
            let (id, pos) = (now.play_id, now.position(now_ms));
            self.op(move |db| db.save_position(id, pos));
        }
        let (tx, rx) = oneshot::channel();
        self.finish(Some(tx), Ok(Reply::Done));
        let _ = rx.await;
        if let Some(player) = self.player.take() {
            let _ = tokio::task::spawn_blocking(move || drop(player)).await;
        }
    }

    /// Reloads the state from the database after a failed write or a panic, before taking
    /// another command: the store runs this read after every write submitted before it, so
    /// what comes back is exactly what is durable.
    async fn resync(&mut self, now_ms: i64) {
        self.needs_resync = false;
        match Loaded::load(&self.store, now_ms).await {
            Ok(l) => {
                let before: Vec<EntryId> = self.queue.ids();
                self.apply_loaded(l);
                for id in before {
                    if !self.queue.contains(id) {
                        self.push_entry(id);
                    }
                }
                for id in self.queue.ids() {
                    self.push_entry(id);
                }
                self.out
                    .push(Change::QueueOrder(self.queue.order().to_vec()));
                self.push_now(now_ms);
                self.push_room();
                let online: Vec<GuestId> = self
                    .guests
                    .iter()
                    .filter(|(_, g)| g.sockets > 0)
                    .map(|(id, _)| id)
                    .collect();
                for g in online {
                    self.push_me(g);
                }
                self.kick(now_ms);
                self.finish(None, Ok(Reply::Done));
            }
            Err(e) => {
                tracing::error!("reloading the state from the database failed: {e}");
            }
        }
    }

    /// Hands this step's writes and changes to the store; publishes and answers after commit.
    pub(super) fn finish(&mut self, reply: Option<ReplyTx>, result: Result<Reply, HubError>) {
        let ops = std::mem::take(&mut self.ops);
        let changes = std::mem::take(&mut self.out);
        if ops.is_empty() && changes.is_empty() && reply.is_none() {
            return;
        }
        let publisher = self.publisher.clone();
        let internal = self.internal.clone();
        self.store.queue_write(
            move |db| {
                for op in ops {
                    op(db)?;
                }
                Ok(())
            },
            move |res| match res {
                Ok(()) => {
                    publisher.publish(changes);
                    if let Some(r) = reply {
                        let _ = r.send(Answer {
                            result,
                            after_seq: publisher.last_seq(),
                        });
                    }
                }
                Err(e) => {
                    tracing::error!("saving failed, the change is refused: {e}");
                    if let Some(r) = reply {
                        let _ = r.send(Answer {
                            result: Err(match e {
                                crate::store::StoreError::Storage(s) => HubError::NotSaved(s),
                                e => HubError::Internal(format!("could not save: {e}")),
                            }),
                            after_seq: publisher.last_seq(),
                        });
                    }
                    let _ = internal.send(Internal::StoreFailed);
                }
            },
        );
    }

    /// Answers a command: a refused command changes nothing.
    pub(super) fn answer(&mut self, reply: Option<ReplyTx>, result: Result<Reply, HubError>) {
        if result.is_err() {
            self.ops.clear();
            self.out.clear();
        }
        self.finish(reply, result);
    }
}

/// How often the slow chores run while they have something to look at.
const CHORES_EVERY: Duration = Duration::from_secs(60);

/// The loop's deadlines; each is armed only while the state has something for it.
#[derive(Default)]
struct Timers {
    /// The presence tick.
    tick: Option<Instant>,
    /// The slow chores.
    chores: Option<Instant>,
    /// The next guest token due to be pruned.
    prune: Option<Instant>,
    /// The next watchdog ping (only under a systemd watchdog).
    watchdog: Option<Instant>,
}

/// Which deadlines passed.
struct Due {
    tick: bool,
    chores: bool,
    prune: bool,
}

impl Timers {
    /// Arms what the state now needs (a deadline already armed keeps its time, so a tick
    /// comes 250 ms after the first change it announces, however many follow); returns the
    /// earliest deadline, `None` when nothing is due at all.
    fn arm(&mut self, s: &State, now: Instant, now_ms: i64) -> Option<Instant> {
        if self.tick.is_none() && s.tick_needed() {
            self.tick = Some(now + PRESENCE_TICK);
        }
        if self.chores.is_none() && s.chores_needed() {
            self.chores = Some(now + CHORES_EVERY);
        }
        // A millisecond late, so that the wall clock has certainly reached it on waking.
        self.prune = s
            .next_prune_ms()
            .map(|at| now + Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64 + 1));
        if let Some(w) = &s.watchdog {
            // At a quarter of systemd's interval: the watchdog pings at half of it, so a ping
            // is never later than three quarters of the interval.
            let every = w.every() / 2;
            if self.watchdog.is_none_or(|t| t > now + every) {
                self.watchdog = Some(now + every);
            }
        }
        [self.tick, self.chores, self.prune, self.watchdog]
            .into_iter()
            .flatten()
            .min()
    }

    /// Clears the deadlines that passed at `now`, and says which.
    fn take_due(&mut self, now: Instant) -> Due {
        let passed = |t: &mut Option<Instant>| {
            let due = t.is_some_and(|t| t <= now);
            if due {
                *t = None;
            }
            due
        };
        passed(&mut self.watchdog);
        Due {
            tick: passed(&mut self.tick),
            chores: passed(&mut self.chores),
            prune: passed(&mut self.prune),
        }
    }
}
