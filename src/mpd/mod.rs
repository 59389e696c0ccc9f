//! The MPD protocol front end (`mpd_listen`, TCP 6600): mpc, ncmpcpp, M.A.L.P., MPDroid and
//! Home Assistant drive the host side as they drive MPD. Without a password a client gets
//! MPD's read set (what plays, the queue, the library, cover art, idle); `password PIN` gives
//! the host's powers, through the same commands as the websocket and the HTTP API. The
//! vote-ordered queue is MPD's consume mode: position 0 plays, the requests follow.
//!
//! - [`tokenize`]: MPD's request line;
//! - [`ack`]: its errors;
//! - [`conn`]: one connection (lines, command lists, idle);
//! - [`commands`]: what each command does, and who may;
//! - [`mirror`]: the party as MPD's queue, with its versions and idle events;
//! - [`song`], [`library`], [`filter`]: songs, browsing, searching, cover art.

mod ack;
mod commands;
mod conn;
mod filter;
mod library;
mod mirror;
mod song;
mod tokenize;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::server::AppState;
pub use conn::{GREETING, MAX_LINE};

/// Reads one MPD request line as the server reads it before running it: MPD's tokenizer,
/// the command and its number of arguments, and the filter expression of `find`, `search`,
/// `list` and the like. `Ok` names the command; `Err` is the text of the ACK a client gets.
pub fn read_request(line: &str) -> Result<(&'static str, usize), String> {
    commands::read(line)
}
use mirror::Mirror;

/// MPD's `max_connections`: MPD clients at once (the server's per-address and total caps
/// apply too).
const MAX_CLIENTS: usize = 100;

/// What every connection shares.
pub struct Ctx {
    state: Arc<AppState>,
    mirror: Mirror,
    music: PathBuf,
    /// The audio output, as `outputs` names it.
    output: String,
}

/// Serves MPD clients on `listener` until the jukebox stops.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, music: PathBuf, output: String) {
    // The tracks' paths are absolute: `file:` is what lies under the folder's real path.
    let music = std::fs::canonicalize(&music).unwrap_or(music);
    let mirror = Mirror::start(
        state.hub.clone(),
        state.store.clone(),
        music.clone(),
        state.closing.subscribe(),
    );
    let ctx = Arc::new(Ctx {
        state,
        mirror,
        music,
        output,
    });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let mut closing = ctx.state.closing.subscribe();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, do not spin.
                    tracing::warn!("mpd: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = closing.changed() => return,
        };
        // The server's caps per address and in all, then MPD's own; over one, closed at once.
        let Ok(conn) = ctx.state.conns.admit(peer.ip()) else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _held = (conn, slot);
            conn::serve(stream, peer, ctx).await;
        });
    }
}
