//! One MPD connection: the greeting, request lines (8 KiB at most, MPD's first-byte rule),
//! command lists, `idle`/`noidle`, and the timeout outside `idle`. What each command does is
//! `commands`' job.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use super::ack::{Ack, Code};
use super::commands::Client;
use super::mirror::Subsystems;
use super::tokenize::{self, LineError};
use super::Ctx;

/// What the server says first (the protocol version of Debian 12's MPD 0.23).
pub const GREETING: &str = "OK MPD 0.23.5\n";
/// MPD's longest request line (its input buffer), newline included.
pub const MAX_LINE: usize = 8192;
/// MPD's `max_command_list_size`.
const MAX_LIST_BYTES: usize = 2 << 20;
/// MPD's `connection_timeout`: a client that says nothing for this long (outside `idle`) is
/// closed.
const TIMEOUT: Duration = Duration::from_secs(60);
/// A response larger than this closes the connection (MPD's `max_output_buffer_size`).
const MAX_OUTPUT: usize = 8 << 20;

/// How reading a line ended.
enum Line {
    Text(String),
    /// The connection closed, failed, sent a line over the limit or not UTF-8: close it.
    End,
}

struct Reader {
    inner: BufReader<OwnedReadHalf>,
    buf: Vec<u8>,
}

impl Reader {
    /// The next line. Cancel-safe: what was read of a line stays in `buf` for the next call.
    async fn line(&mut self) -> Line {
        loop {
            let room = (MAX_LINE - self.buf.len()) as u64;
            match (&mut self.inner)
                .take(room)
                .read_until(b'\n', &mut self.buf)
                .await
            {
                Ok(0) if room > 0 => return Line::End,
                Ok(_) if self.buf.last() == Some(&b'\n') => {
                    self.buf.pop();
                    let line = std::mem::take(&mut self.buf);
                    return match String::from_utf8(line) {
                        Ok(s) => Line::Text(s),
                        Err(_) => Line::End,
                    };
                }
                // Full without a newline: MPD drops such a client ("Input buffer is full").
                Ok(_) if self.buf.len() >= MAX_LINE => return Line::End,
                Ok(_) => continue,
                Err(_) => return Line::End,
            }
        }
    }
}

/// Serves one client until it closes, misbehaves or the jukebox stops.
pub async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    if write.write_all(GREETING.as_bytes()).await.is_err() {
        return;
    }
    let mut reader = Reader {
        inner: BufReader::new(read),
        buf: Vec::new(),
    };
    let mut events = ctx.mirror.subscribe();
    let mut client = Client::new(ctx.clone(), peer.ip());
    let mut closing = ctx.state.closing.subscribe();
    loop {
        let line = tokio::select! {
            l = tokio::time::timeout(TIMEOUT, reader.line()) => match l {
                Ok(Line::Text(l)) => l,
                _ => return,
            },
            _ = closing.changed() => return,
        };
        client.note(drain(&mut events));
        let mut out = Vec::new();
        let go_on = match first_word(&line) {
            None => false,
            Some("command_list_begin") | Some("command_list_ok_begin") => {
                let ok = line.starts_with("command_list_ok_begin");
                list(&mut reader, &mut client, ok, &mut out).await
            }
            Some("idle") => {
                let go_on = tokio::select! {
                    g = idle(&line, &mut reader, &mut write, &mut client, &mut events) => g,
                    // An idle client does not hold up the jukebox's shutdown.
                    _ = closing.changed() => false,
                };
                if !go_on {
                    return;
                }
                continue;
            }
            // Not idling: nothing to end, and MPD says nothing.
            Some("noidle") => true,
            Some(_) => one(&mut client, &line, 0, &mut out).await,
        };
        if out.len() > MAX_OUTPUT || write.write_all(&out).await.is_err() || !go_on {
            return;
        }
    }
}

/// The first word of a line, if the line may be a command at all: MPD closes a connection
/// whose line does not start with a lowercase letter (an empty line, a stray HTTP request).
fn first_word(line: &str) -> Option<&str> {
    if !line.as_bytes().first().is_some_and(u8::is_ascii_lowercase) {
        return None;
    }
    Some(line.split([' ', '\t']).next().unwrap_or(line).trim_end())
}

/// Runs one line outside a list; whether the connection goes on.
async fn one(client: &mut Client, line: &str, index: usize, out: &mut Vec<u8>) -> bool {
    match run(client, line, out).await {
        Ok(Flow::Go) => {
            out.extend_from_slice(b"OK\n");
            true
        }
        Ok(Flow::Close) => false,
        Err((ack, close)) => {
            write_ack(out, &ack, index);
            !close
        }
    }
}

enum Flow {
    Go,
    Close,
}

/// Tokenizes and runs one command; the ACK and whether to close after it on failure.
async fn run(client: &mut Client, line: &str, out: &mut Vec<u8>) -> Result<Flow, (Ack, bool)> {
    let req = tokenize::split(line).map_err(|e| {
        let close = matches!(e, LineError::Name(_));
        (Ack::new(Code::Unknown, "", e.message()), close)
    })?;
    if req.command == "close" {
        return Ok(Flow::Close);
    }
    client
        .exec(&req.command, &req.args, out)
        .await
        .map_err(|a| (a, false))?;
    Ok(Flow::Go)
}

fn write_ack(out: &mut Vec<u8>, ack: &Ack, index: usize) {
    let mut s = String::new();
    ack.write(index, &mut s);
    out.extend_from_slice(s.as_bytes());
}

/// A command list, read up to `command_list_end` and then run in order until one fails;
/// whether the connection goes on.
async fn list(reader: &mut Reader, client: &mut Client, ok: bool, out: &mut Vec<u8>) -> bool {
    let mut lines = Vec::new();
    let mut bytes = 0;
    loop {
        let line = match tokio::time::timeout(TIMEOUT, reader.line()).await {
            Ok(Line::Text(l)) => l,
            _ => return false,
        };
        if line == "command_list_end" {
            break;
        }
        bytes += line.len();
        if bytes > MAX_LIST_BYTES {
            return false;
        }
        lines.push(line);
    }
    for (i, line) in lines.iter().enumerate() {
        if first_word(line).is_none() {
            return false;
        }
        let nested = line.starts_with("command_list_");
        if nested {
            let word = first_word(line).unwrap_or_default();
            write_ack(
                out,
                &Ack::new(Code::Unknown, "", format!("unknown command \"{word}\"")),
                i,
            );
            return true;
        }
        // idle and noidle in a list are queued and do nothing, as in MPD 0.23.12.
        if matches!(first_word(line), Some("idle") | Some("noidle")) {
            if ok {
                out.extend_from_slice(b"list_OK\n");
            }
            continue;
        }
        match run(client, line, out).await {
            Ok(Flow::Go) => {
                if ok {
                    out.extend_from_slice(b"list_OK\n");
                }
            }
            Ok(Flow::Close) => return false,
            Err((ack, close)) => {
                write_ack(out, &ack, i);
                return !close;
            }
        }
    }
    out.extend_from_slice(b"OK\n");
    true
}

/// Every subsystem announced since the last look (all of them after falling behind).
fn drain(events: &mut broadcast::Receiver<Subsystems>) -> Subsystems {
    let mut got = Subsystems::default();
    loop {
        match events.try_recv() {
            Ok(s) => got |= s,
            Err(broadcast::error::TryRecvError::Lagged(_)) => got = Subsystems::ALL,
            Err(_) => return got,
        }
    }
}

/// `idle [SUBSYSTEM…]`: answers at once with what changed since, else waits for a change or
/// `noidle` (no timeout meanwhile); any other line ends the connection, as in MPD.
async fn idle(
    line: &str,
    reader: &mut Reader,
    write: &mut OwnedWriteHalf,
    client: &mut Client,
    events: &mut broadcast::Receiver<Subsystems>,
) -> bool {
    let mask = match tokenize::split(line) {
        Err(e) => {
            let mut out = Vec::new();
            write_ack(&mut out, &Ack::new(Code::Unknown, "", e.message()), 0);
            return write.write_all(&out).await.is_ok();
        }
        Ok(req) => {
            let mut mask = Subsystems::default();
            for a in &req.args {
                match Subsystems::named(a) {
                    Some(s) => mask |= s,
                    None => {
                        let mut out = Vec::new();
                        write_ack(
                            &mut out,
                            &Ack::arg("idle", format!("Unrecognized idle event: {a}")),
                            0,
                        );
                        return write.write_all(&out).await.is_ok();
                    }
                }
            }
            if mask.is_empty() {
                Subsystems::ALL
            } else {
                mask
            }
        }
    };
    loop {
        let ready = client.take(mask);
        if !ready.is_empty() {
            return write.write_all(changed(ready).as_bytes()).await.is_ok();
        }
        tokio::select! {
            e = events.recv() => match e {
                Ok(s) => client.note(s),
                Err(broadcast::error::RecvError::Lagged(_)) => client.note(Subsystems::ALL),
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            l = reader.line() => {
                return match l {
                    Line::Text(l) if l.trim_end() == "noidle" => {
                        let ready = client.take(mask);
                        write.write_all(changed(ready).as_bytes()).await.is_ok()
                    }
                    // A command during idle: MPD closes the connection.
                    _ => false,
                };
            }
        }
    }
}

/// The end of an idle: a `changed:` line per subsystem, then `OK`.
fn changed(ready: Subsystems) -> String {
    let mut out = String::new();
    for n in ready.names() {
        out.push_str("changed: ");
        out.push_str(n);
        out.push('\n');
    }
    out.push_str("OK\n");
    out
}
