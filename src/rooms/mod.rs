//! The rooms: snapserver's clients, one per room, as its control port reports them, for the
//! host page's rooms panel (the `rooms` topic) and its volume and mute controls.
//!
//! One task holds the connection to snapserver's JSON-RPC (newline-delimited JSON-RPC 2.0 on
//! its `[tcp]` port), asks `Server.GetStatus` on every connect, follows the `Client.On…` and
//! `Server.OnUpdate` notifications, and tells the hub whenever the rooms change: the hub
//! numbers the changes like any other, so hosts see them in order with everything else. A
//! snapserver that is missing, refuses, hangs or restarts costs only the rooms panel (it says
//! so, and the task tries again with a growing pause); the party never waits on it.
//!
//! snapserver sends a notification to every control client except the one whose request
//! caused it, so a volume set here is applied from the request's own answer.

mod status;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

use crate::hub::{Hub, RoomsView, SnapserverView};
use status::{Client, Volume};

/// How long connecting, writing a request and each answer may take before snapserver counts
/// as hung (it is then reconnected).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// The first pause before trying again, doubled after each failure up to `MOST_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MOST_PAUSE: Duration = Duration::from_secs(10);
/// The longest line read from snapserver: a status of a few hundred clients is far less.
const MAX_LINE: u64 = 4 << 20;
/// Volume changes waiting for the task.
const ASKS: usize = 64;

/// What a room is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Volume(u32),
    Mute(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomsError {
    #[error("no room {0:?} (the rooms topic lists them)")]
    NotFound(String),
    #[error("snapserver at {address} cannot be reached ({why}); the jukebox keeps trying")]
    Unreachable { address: String, why: String },
    #[error("snapserver refused: {0}")]
    Refused(String),
}

struct Ask {
    room: String,
    set: Set,
    /// The `seq` of the last change published once the rooms show it.
    reply: oneshot::Sender<Result<u64, RoomsError>>,
}

/// The handle to the rooms task; it ends when the last handle is dropped.
#[derive(Clone)]
pub struct Rooms {
    tx: mpsc::Sender<Ask>,
    address: SocketAddr,
}

impl Rooms {
    /// Starts the task talking to snapserver's control port at `address`.
    pub fn start(address: SocketAddr, hub: Hub) -> Rooms {
        let (tx, rx) = mpsc::channel(ASKS);
        let link = Link {
            hub,
            shown: RoomsView::connecting(address),
        };
        tokio::spawn(run(address, link, rx));
        Rooms { tx, address }
    }

    /// Sets a room's volume or mute; answers once snapserver did and the rooms show it,
    /// with the `seq` of the last change published by then.
    pub async fn set(&self, room: String, set: Set) -> Result<u64, RoomsError> {
        let (reply, rx) = oneshot::channel();
        let gone = || RoomsError::Unreachable {
            address: self.address.to_string(),
            why: "the jukebox is shutting down".into(),
        };
        self.tx
            .send(Ask { room, set, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// What the hub was last told, and the way to tell it.
struct Link {
    hub: Hub,
    shown: RoomsView,
}

impl Link {
    /// Tells the hub, if anything changed; the `seq` after which hosts see `view`.
    async fn show(&mut self, view: RoomsView) -> u64 {
        if view == self.shown {
            return self.hub.last_seq();
        }
        self.shown = view.clone();
        self.hub.set_rooms(view).await.after_seq
    }

    fn snapserver(&self, reachable: bool, error: Option<String>) -> SnapserverView {
        SnapserverView {
            address: self.shown.snapserver.address.clone(),
            reachable,
            error,
        }
    }
}

async fn run(address: SocketAddr, mut link: Link, mut asks: mpsc::Receiver<Ask>) {
    let mut pause = FIRST_PAUSE;
    // Whether this outage was reported: one warning each, not one per try.
    let mut said = false;
    loop {
        let why = match timeout(ANSWER_WITHIN, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let mut s = Session::new(stream, &mut link);
                match s.run(&mut asks).await {
                    Ended::Closed => return,
                    Ended::Lost { why, was_up } => {
                        if was_up {
                            pause = FIRST_PAUSE;
                            said = false;
                        }
                        why
                    }
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", ANSWER_WITHIN.as_secs()),
        };
        if said {
            tracing::debug!("rooms: snapserver at {address} still cannot be reached ({why})");
        } else {
            tracing::warn!(
                "rooms: snapserver at {address} cannot be reached ({why}); trying again, \
                 the party plays on"
            );
            said = true;
        }
        let view = RoomsView {
            snapserver: link.snapserver(false, Some(why.clone())),
            rooms: link.shown.rooms.clone(),
        };
        link.show(view).await;
        // Waiting to try again; volume changes meanwhile are answered at once.
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                ask = asks.recv() => match ask {
                    None => return,
                    Some(a) => {
                        let _ = a.reply.send(Err(RoomsError::Unreachable {
                            address: address.to_string(),
                            why: why.clone(),
                        }));
                    }
                },
            }
        }
        pause = (pause * 2).min(MOST_PAUSE);
    }
}

/// How a session with snapserver ended.
enum Ended {
    /// The handles are gone: the jukebox is stopping.
    Closed,
    /// The connection broke or snapserver stopped answering; `was_up` when it had answered.
    Lost { why: String, was_up: bool },
}

/// A request waiting for snapserver's answer.
enum Pending {
    Status,
    Set {
        room: String,
        reply: oneshot::Sender<Result<u64, RoomsError>>,
    },
}

/// One connection to snapserver.
struct Session<'a> {
    link: &'a mut Link,
    writer: OwnedWriteHalf,
    lines: mpsc::Receiver<Result<Value, String>>,
    reader: tokio::task::JoinHandle<()>,
    next_id: u64,
    pending: HashMap<u64, (Instant, Pending)>,
    /// `None` until the first status arrived.
    clients: Option<BTreeMap<String, Client>>,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl<'a> Session<'a> {
    fn new(stream: TcpStream, link: &'a mut Link) -> Session<'a> {
        let _ = stream.set_nodelay(true);
        let (read, writer) = stream.into_split();
        let (tx, lines) = mpsc::channel(64);
        let reader = tokio::spawn(read_lines(BufReader::new(read), tx));
        Session {
            link,
            writer,
            lines,
            reader,
            next_id: 0,
            pending: HashMap::new(),
            clients: None,
        }
    }

    async fn run(&mut self, asks: &mut mpsc::Receiver<Ask>) -> Ended {
        match self.run_until_lost(asks).await {
            Ok(()) => Ended::Closed,
            Err(why) => {
                let address = self.link.shown.snapserver.address.clone();
                for (_, (_, p)) in self.pending.drain() {
                    if let Pending::Set { reply, .. } = p {
                        let _ = reply.send(Err(RoomsError::Unreachable {
                            address: address.clone(),
                            why: why.clone(),
                        }));
                    }
                }
                Ended::Lost {
                    why,
                    was_up: self.clients.is_some(),
                }
            }
        }
    }

    async fn run_until_lost(&mut self, asks: &mut mpsc::Receiver<Ask>) -> Result<(), String> {
        self.send("Server.GetStatus", json!({}), Pending::Status)
            .await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                line = self.lines.recv() => match line {
                    Some(Ok(v)) => self.on_message(v).await?,
                    Some(Err(why)) => return Err(why),
                    None => return Err("the connection closed".into()),
                },
                ask = asks.recv() => match ask {
                    None => return Ok(()),
                    Some(a) => self.on_ask(a).await?,
                },
                _ = tick.tick() => {
                    if self.pending.values().any(|(t, _)| t.elapsed() > ANSWER_WITHIN) {
                        return Err(format!(
                            "it did not answer within {} s",
                            ANSWER_WITHIN.as_secs()
                        ));
                    }
                }
            }
        }
    }

    /// Writes one request; an error when the connection cannot take it.
    async fn send(&mut self, method: &str, params: Value, then: Pending) -> Result<(), String> {
        self.next_id += 1;
        let id = self.next_id;
        let line = format!(
            "{}\r\n",
            json!({"id": id, "jsonrpc": "2.0", "method": method, "params": params})
        );
        match timeout(ANSWER_WITHIN, self.writer.write_all(line.as_bytes())).await {
            Ok(Ok(())) => {
                self.pending.insert(id, (Instant::now(), then));
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("it does not read its control connection".into()),
        }
    }

    async fn on_ask(&mut self, a: Ask) -> Result<(), String> {
        let Some(clients) = &self.clients else {
            let _ = a.reply.send(Err(RoomsError::Unreachable {
                address: self.link.shown.snapserver.address.clone(),
                why: "it has not answered yet".into(),
            }));
            return Ok(());
        };
        let Some(c) = clients.get(&a.room) else {
            let _ = a.reply.send(Err(RoomsError::NotFound(a.room)));
            return Ok(());
        };
        // Both fields, from what is known: 0.26 takes the volume object whole.
        let volume = match a.set {
            Set::Volume(percent) => Volume {
                percent,
                ..c.volume
            },
            Set::Mute(muted) => Volume { muted, ..c.volume },
        };
        let params = json!({"id": a.room,
                            "volume": {"percent": volume.percent, "muted": volume.muted}});
        let then = Pending::Set {
            room: a.room,
            reply: a.reply,
        };
        self.send("Client.SetVolume", params, then).await
    }

    async fn on_message(&mut self, v: Value) -> Result<(), String> {
        if let Some(method) = v["method"].as_str() {
            let Some(clients) = &mut self.clients else {
                return Ok(()); // the status that follows has it
            };
            if status::apply(clients, method, &v["params"]) {
                self.show().await;
            }
            return Ok(());
        }
        let Some((_, pending)) = v["id"].as_u64().and_then(|id| self.pending.remove(&id)) else {
            return Ok(()); // an answer to nothing we asked
        };
        let error = v["error"]["message"].as_str().map(str::to_string);
        match pending {
            Pending::Status => {
                let server = &v["result"]["server"];
                if let Some(e) = error.or_else(|| server.is_null().then(|| "no status".into())) {
                    return Err(format!("Server.GetStatus failed: {e}"));
                }
                let clients = status::clients(server);
                tracing::info!(
                    "rooms: snapserver {} at {} has {} client(s)",
                    status::version(server),
                    self.link.shown.snapserver.address,
                    clients.len()
                );
                self.clients = Some(clients);
                self.show().await;
            }
            Pending::Set { room, reply } => {
                if let Some(e) = error {
                    let _ = reply.send(Err(RoomsError::Refused(e)));
                    return Ok(());
                }
                if let (Some(clients), Some(vol)) =
                    (&mut self.clients, Volume::read(&v["result"]["volume"]))
                {
                    if let Some(c) = clients.get_mut(&room) {
                        c.volume = vol;
                    }
                }
                let seq = self.show().await;
                let _ = reply.send(Ok(seq));
            }
        }
        Ok(())
    }

    /// Tells the hub the rooms as they are now.
    async fn show(&mut self) -> u64 {
        let rooms = self.clients.as_ref().map(status::rooms).unwrap_or_default();
        let view = RoomsView {
            snapserver: self.link.snapserver(true, None),
            rooms,
        };
        self.link.show(view).await
    }
}

/// Reads snapserver's lines into `tx` until the connection ends, which it reports last.
async fn read_lines(
    mut read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    tx: mpsc::Sender<Result<Value, String>>,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let end = match (&mut read).take(MAX_LINE).read_until(b'\n', &mut buf).await {
            Ok(0) => Some("snapserver closed the connection".to_string()),
            Ok(_) if buf.last() != Some(&b'\n') && buf.len() as u64 >= MAX_LINE => {
                Some(format!("a line longer than {} MiB", MAX_LINE >> 20))
            }
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = end {
            let _ = tx.send(Err(why)).await;
            return;
        }
        // A line that is not JSON is skipped: one bad line is no reason to drop the rest.
        match serde_json::from_slice::<Value>(&buf) {
            Ok(v) => {
                if tx.send(Ok(v)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!("rooms: a line from snapserver is not JSON: {e}"),
        }
    }
}
