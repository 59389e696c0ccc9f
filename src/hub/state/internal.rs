//! The hub's own messages: the store's answers (a track looked up for a request, an auto-DJ
//! pick, a failed write), sockets closing, and the library scan.

use super::{Internal, State};
use crate::hub::deck::Picked;
use crate::hub::{HubError, Reply};
use crate::library::{self, ScanProgress};
use crate::loudness::Pass;

impl State {
    pub(super) fn on_internal(&mut self, msg: Internal, now_ms: i64) {
        match msg {
            Internal::RequestTrack {
                actor,
                track_id,
                dedication,
                track,
                reply,
            } => {
                let result = match track {
                    Ok(t) => self.request_with_track(actor, t, dedication, now_ms),
                    Err(e) => Err(HubError::Internal(format!("reading track {track_id}: {e}"))),
                };
                self.answer(reply, result);
                return;
            }
            Internal::AutoPicked { generation, track } => {
                let found = track.is_some();
                match self.deck.on_auto_picked(generation, track) {
                    Picked::Stale => return,
                    Picked::Load(cmd) => self.player(cmd),
                    Picked::Empty if self.rules.is_open() => {
                        tracing::info!("nothing to play: the library is empty")
                    }
                    Picked::Empty => {}
                    Picked::Kept => self.refresh_preload(now_ms),
                }
                self.set_autodj_blocked(!found && !self.rules.is_open());
            }
            Internal::StoreFailed => self.needs_resync = true,
            Internal::SocketClosed(g, addr) => self.socket_closed(g, addr, now_ms),
            Internal::Scan(p) => {
                self.scan.progress(p);
                if p.read > 0 {
                    self.deck.library_changed();
                }
                self.push_room();
                // A first scan of a big library: start the music with what is indexed so far.
                if p.read > 0 && !self.deck.busy() && self.deck.wants_auto() {
                    self.request_auto(now_ms);
                }
            }
            Internal::ScanDone(res) => {
                self.deck.library_changed();
                match res {
                    Ok(size) => self.library_size = size,
                    Err(e) => tracing::error!("library scan failed: {e}"),
                }
                self.scan.ended();
                self.push_room();
                if self.deck.busy() {
                    self.refresh_preload(now_ms);
                } else {
                    self.advance(now_ms);
                }
            }
            Internal::Measured(id, levels) => self.measured(id, levels),
            Internal::Shutdown(_) => {}
        }
        self.finish(None, Ok(Reply::Done));
    }

    /// Starts a library scan on a thread of its own, unless one runs.
    pub(super) fn start_scan(&mut self) {
        let Some(cancel) = self.scan.start() else {
            return;
        };
        self.push_room();
        let (store, music, internal) = (
            self.store.clone(),
            self.music.clone(),
            self.internal.clone(),
        );
        // The loudness pass waits while the scan runs: the scan comes first.
        let hold = self.pass.as_ref().map(Pass::scan_hold);
        let spawned = std::thread::Builder::new()
            .name("scan".into())
            .spawn(move || {
                let progress_tx = internal.clone();
                let progress = move |p: ScanProgress| {
                    let _ = progress_tx.send(Internal::Scan(p));
                };
                let res = library::scan(&music, &store, &progress, &cancel)
                    .map_err(|e| e.to_string())
                    .and_then(|report| {
                        tracing::info!(
                            "library: {} audio files in {} ({} read, {} unchanged, {} removed, {} unreadable) in {} ms",
                            report.files,
                            music.display(),
                            report.read,
                            report.unchanged,
                            report.removed,
                            report.skipped,
                            report.elapsed.as_millis()
                        );
                        store
                            .read_blocking(|db| db.track_count())
                            .map_err(|e| e.to_string())
                    });
                drop(hold);
                let _ = internal.send(Internal::ScanDone(res));
            });
        if let Err(e) = spawned {
            self.scan.not_started();
            tracing::error!("cannot start the library scan: {e}");
        }
    }

    /// Whether the auto-DJ found nothing the content rules allow; the room (and so the host
    /// page) says so when it changes.
    fn set_autodj_blocked(&mut self, blocked: bool) {
        if blocked == self.autodj_blocked {
            return;
        }
        if blocked {
            tracing::warn!(
                "the auto-DJ has nothing to play: no track of the library passes the host's content rules"
            );
        }
        self.autodj_blocked = blocked;
        self.push_room();
    }
}
