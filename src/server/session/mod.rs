//! Sessions: the unit of sequencing and resume (protocol.md §3–4, §10). A session outlives its
//! sockets. A session takes the encoded change stream, keeps what its guest may see
//! (subscribed topics, their own personal changes), numbers it with the session's `seq`,
//! keeps the last messages for resume, and hands them to the attached socket through a
//! bounded queue. The attached socket's task drives it; one that has no socket waits for
//! its phone on a task of its own. Replies travel through the same task and wait until the changes
//! they caused have been numbered, so a reply always comes after its own updates. Snapshots
//! are merged into the stream so that no change falls between a snapshot and the next delta,
//! and none is applied twice.
//!
//! - `registry`: all sessions, by id; which one makes room when there are too many.
//! - `encoder`: hub changes encoded once into [`Wire`] messages every session shares;
//!   `shared` the snapshots every guest sees alike, encoded once until their topic changes.
//! - `task`: one session's state and its drivers ([`Bound`] for its socket's task);
//!   `buffer` its resume buffer and own-bytes accounting,
//!   `sequencing` the reply and snapshot orders, `topics` what it follows.
//! - `handle`: the [`Session`] handle sockets hold, and what it asks the task.
//! - `outbox`: how a session hands frames, and closes, to its socket.
//! - `limits`: the limits sessions keep; `hello`: the rate of hellos per guest.

mod buffer;
mod encoder;
mod handle;
mod hello;
mod limits;
mod outbox;
mod registry;
mod sequencing;
mod shared;
mod task;
mod topics;

pub use encoder::Wire;
pub use handle::{Attached, Resume, Session};
pub use limits::SessionLimits;
pub use outbox::{CloseReq, Outbox};
pub use registry::{Full, Sessions};
pub use task::Bound;

/// Facts the welcome message carries.
pub struct ServerInfo {
    pub build: String,
    pub epoch: String,
    pub heartbeat_ms: u64,
    /// `welcome.features`.
    pub features: Vec<&'static str>,
}
