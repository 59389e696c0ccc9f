//! The encoder: one task that turns each hub change into a wire message encoded once, and
//! hands it to the sessions that may want it, by lane:
//!
//! - **shared**: what guests may show (now playing, the queue, the room, the history, events,
//!   and each guest's own `me` and personal events, which every session filters), on one
//!   broadcast every session task listens to;
//! - **hosts**: the host-only topics (`admin`, `rooms`), on a broadcast only hosts' sessions
//!   listen to.
//!
//! The host's guest list changes with every phone that joins, twice (its token, then its
//! socket): on one broadcast of everything, each join woke every other session to drop those,
//! and a room filling up cost the square of its phones. A guest's session no longer sees every
//! hub seq, so "a reply comes after the changes it caused" rests on [`Lanes::done`]: the
//! encoder marks each seq handed on, a reply waits for its seq there, and its session drains
//! its lanes before it sends the reply. A host's session merges its two lanes by hub seq.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use super::shared::SharedSnapshots;
use crate::hub::Hub;
use crate::party::GuestId;
use crate::protocol::{self, Tail, Topic};

/// One encoded change, shared by every session it goes to (encoded once).
#[derive(Debug)]
pub struct Wire {
    pub hub_seq: u64,
    /// `None` for events, which go to every socket.
    pub topic: Option<Topic>,
    /// Personal changes name their guest.
    pub to: Option<GuestId>,
    /// `None` for changes the wire does not carry.
    pub tail: Option<Tail>,
    /// The encoder lost changes: every session must snapshot again.
    pub gap: bool,
}

/// Where the encoder's output goes.
pub(super) struct Lanes {
    pub(super) shared: broadcast::Sender<Arc<Wire>>,
    pub(super) hosts: broadcast::Sender<Arc<Wire>>,
    /// The last hub seq handed on: every wire up to it is in the lanes it belongs to.
    pub(super) done: watch::Sender<u64>,
    /// Snapshots every guest sees alike, shared until their topic changes.
    pub(super) snapshots: SharedSnapshots,
}

impl Lanes {
    pub(super) fn new(hub: &Hub) -> Lanes {
        Lanes {
            shared: broadcast::channel(crate::hub::CHANGE_BUFFER).0,
            // Few hosts, few host-only changes; a lagging host snapshots again.
            hosts: broadcast::channel(crate::hub::CHANGE_BUFFER / 4).0,
            done: watch::channel(hub.last_seq()).0,
            snapshots: SharedSnapshots::default(),
        }
    }

    /// Waits until the encoder has handed on every change up to `seq` (at once when it has,
    /// or when it has stopped).
    pub(super) async fn handed_on(&self, seq: u64) {
        if *self.done.borrow() >= seq {
            return;
        }
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|done| *done >= seq).await;
    }

    /// The last hub seq handed on.
    pub(super) fn handed_on_now(&self) -> u64 {
        *self.done.borrow()
    }
}

/// Starts the encoder; it ends when the hub's change stream closes.
pub(super) fn spawn(hub: Hub, lanes: Arc<Lanes>) {
    let mut changes = hub.subscribe();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(p) => {
                    let w = Wire {
                        hub_seq: p.seq,
                        topic: protocol::change_topic(&p.change),
                        to: p.change.only_for(),
                        tail: protocol::encode_change(&p.change),
                        gap: false,
                    };
                    lanes.snapshots.changed(w.topic, p.seq);
                    // What the wire does not carry goes to nobody.
                    if w.tail.is_some() {
                        let lane = match w.topic {
                            Some(t) if t.host_only() => &lanes.hosts,
                            _ => &lanes.shared,
                        };
                        let _ = lane.send(Arc::new(w));
                    }
                    lanes.done.send_replace(p.seq);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Which changes were lost is unknown: a gap makes every session
                    // snapshot again rather than miss them silently.
                    tracing::warn!("the change encoder fell {n} changes behind");
                    let seq = hub.last_seq();
                    lanes.snapshots.lost(seq);
                    let _ = lanes.shared.send(Arc::new(Wire {
                        hub_seq: seq,
                        topic: None,
                        to: None,
                        tail: None,
                        gap: true,
                    }));
                    lanes.done.send_replace(seq);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}
