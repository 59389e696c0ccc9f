//! What a session hands its socket: frames in order, and a close out of band.

use std::sync::Mutex;

use axum::extract::ws::Utf8Bytes;

use super::super::mailbox::Mailbox;

/// A close: code, reason, and whether the client should reconnect.
pub type CloseReq = (u16, &'static str, bool);

/// The session was evicted just as a socket attached: the phone starts a new one.
pub(super) const SESSION_ENDED: CloseReq = (4008, "the session ended; start a new one", true);
/// The socket could not keep up: it resumes from the buffer when it comes back.
pub(super) const TOO_SLOW: CloseReq = (4008, "too slow to keep up", true);
/// A newer socket took over the session; the old one must not reconnect and steal it back.
pub(super) const TAKEN_OVER: CloseReq =
    (4008, "the session continued on another connection", false);

/// What a socket sends: the frames its session hands it, in order, and a close the session
/// may ask for out of band (the queue may be full of what a slow phone has not read).
#[derive(Default)]
pub struct Outbox {
    pub frames: Mailbox<Utf8Bytes>,
    kick: Mutex<Option<CloseReq>>,
}

impl Outbox {
    /// Asks the socket to close at once, without sending what is still queued.
    pub fn kick(&self, close: CloseReq) {
        *self.kick.lock().unwrap_or_else(|e| e.into_inner()) = Some(close);
        self.frames.wake();
    }

    pub fn kicked(&self) -> Option<CloseReq> {
        *self.kick.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_is_kept_until_the_socket_reads_it() {
        let out = Outbox::default();
        assert_eq!(out.kicked(), None);
        out.kick(TOO_SLOW);
        assert_eq!(out.kicked(), Some(TOO_SLOW));
    }
}
