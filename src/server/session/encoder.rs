//! The encoder: one task that turns each hub change into a wire message shared by every
//! session, so that thousands of phones cost one encoding per change, not one each.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::hub::Hub;
use crate::party::GuestId;
use crate::protocol::{self, Tail, Topic};

/// One encoded change, shared by every session (encoded once).
#[derive(Debug)]
pub struct Wire {
    pub hub_seq: u64,
    /// `None` for events, which go to every socket.
    pub topic: Option<Topic>,
    /// Personal changes name their guest.
    pub to: Option<GuestId>,
    /// `None` for changes the wire does not carry (the seq still goes by).
    pub tail: Option<Tail>,
    /// The encoder lost changes: every session must snapshot again.
    pub gap: bool,
}

/// Where the encoder's output goes: every session task subscribes.
pub(super) fn channel() -> broadcast::Sender<Arc<Wire>> {
    broadcast::channel(crate::hub::CHANGE_BUFFER).0
}

/// Starts the encoder; it ends when the hub's change stream closes.
pub(super) fn spawn(hub: Hub, wire: broadcast::Sender<Arc<Wire>>) {
    let mut changes = hub.subscribe();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(p) => {
                    let _ = wire.send(Arc::new(Wire {
                        hub_seq: p.seq,
                        topic: protocol::change_topic(&p.change),
                        to: p.change.only_for(),
                        tail: protocol::encode_change(&p.change),
                        gap: false,
                    }));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Which changes were lost is unknown: a gap makes every session
                    // snapshot again rather than miss them silently.
                    tracing::warn!("the change encoder fell {n} changes behind");
                    let _ = wire.send(Arc::new(Wire {
                        hub_seq: hub.last_seq(),
                        topic: None,
                        to: None,
                        tail: None,
                        gap: true,
                    }));
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}
