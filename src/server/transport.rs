//! The transport under the router: our own accept loop on hyper, so that no client can hold
//! the server's sockets. Every connection has a header-read timeout (which hyper also applies
//! while a keep-alive connection waits for its next request, so it is the idle timeout too);
//! open connections are capped per address (an IPv6 /64) and in total, with a reserve that
//! keeps the last few slots for addresses that hold almost nothing. A refused connection gets
//! a one-write `503` and is closed at once. Websockets keep their slot (they are counted until
//! they close) but not the timeouts: they have their own liveness (protocol.md §9).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;

/// A client must send a request's headers within this long, counted from when the connection
/// starts waiting for a request: right after it is opened, and after each answer on a
/// keep-alive connection (so an idle connection is closed after this long). Phones on a bad
/// Wi-Fi send a few hundred bytes of headers in well under a second; browsers simply open a new
/// connection for their next request.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// At shutdown, how long in-flight connections get to finish (after every websocket has been
/// told `bye` 1001). Well inside the unit's TimeoutStopSec=20s.
pub const DRAIN: Duration = Duration::from_secs(5);
/// Hyper's buffer per connection, which bounds the headers of one request. Real requests have
/// well under 2 KiB of headers.
const MAX_BUF: usize = 16 * 1024;
/// The share of `max_connections` kept in reserve: once fewer slots are free, an address that
/// already holds `RESERVED_PER_ADDRESS` connections is refused, while one that holds fewer
/// still gets in. So one address, or a few, can fill the server only up to that point.
const RESERVE_DIVISOR: usize = 8;
/// Connections an address may hold while the server is in its reserve: a phone's page load
/// and its websocket.
const RESERVED_PER_ADDRESS: usize = 2;
/// At most one log line about refused connections (or failed accepts) this often.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// The one answer a refused connection gets.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 5\r\n\
connection: close\r\n\
x-content-type-options: nosniff\r\n\
content-length: 71\r\n\r\n\
{\"code\":\"busy\",\"message\":\"too many connections; try again in a moment\"}";

/// How many connections may be open.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub per_address: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS as usize,
            per_address: crate::config::DEFAULT_CONNECTIONS_PER_ADDRESS as usize,
        }
    }
}

/// Who a connection counts against: one device (`crate::addr::device`). Not the /64 of an
/// IPv6 address: on an IPv6 LAN every phone shares one, so that would lock out the party. An
/// attacker with many addresses is bounded by the total and its reserve instead.
pub type AddrKey = IpAddr;

pub fn addr_key(ip: IpAddr) -> AddrKey {
    crate::addr::device(ip)
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every slot is taken.
    Full,
    /// This address holds its share.
    Address,
}

/// The open connections, per address and in total.
pub struct Connections {
    limits: ConnLimits,
    per: Mutex<HashMap<AddrKey, usize>>,
    /// The total; watched at shutdown until it is zero.
    total: tokio::sync::watch::Sender<usize>,
    refused: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

/// One open connection's slot; given back on drop.
pub struct ConnSlot {
    conns: Arc<Connections>,
    key: AddrKey,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut per = self.conns.per.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.key);
            }
        }
        self.conns.total.send_modify(|t| *t = t.saturating_sub(1));
    }
}

/// A connection's slot as a request extension: a websocket takes it along, so the socket is
/// counted until it closes, not only until the upgrade.
#[derive(Clone)]
pub struct ConnTicket(#[allow(dead_code)] Arc<ConnSlot>);

/// The address a connection reached on this machine (a request extension): the one that
/// surely works for that phone, whatever the machine's other addresses are.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub std::net::SocketAddr);

impl Connections {
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Connections {
            limits,
            per: Mutex::new(HashMap::new()),
            total: tokio::sync::watch::Sender::new(0),
            refused: AtomicU64::new(0),
            last_log: Mutex::new(None),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        *self.total.borrow()
    }

    /// A slot for a new connection from `ip`, or why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refusal> {
        let key = addr_key(ip);
        let mut per = self.per.lock().unwrap_or_else(|e| e.into_inner());
        let total = *self.total.borrow();
        let max = self.limits.max_connections;
        let held = per.get(&key).copied().unwrap_or(0);
        if total >= max {
            return Err(Refusal::Full);
        }
        if held >= self.limits.per_address {
            return Err(Refusal::Address);
        }
        let reserve = (max / RESERVE_DIVISOR).max(1);
        if total >= max - reserve && held >= RESERVED_PER_ADDRESS {
            return Err(Refusal::Address);
        }
        *per.entry(key).or_insert(0) += 1;
        self.total.send_modify(|t| *t += 1);
        Ok(ConnSlot {
            conns: self.clone(),
            key,
        })
    }

    /// Counts a refusal; logs (at most every `LOG_EVERY`) how many there were.
    fn refused(&self, why: Refusal, ip: IpAddr) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if self.may_log() {
            self.refused.store(0, Ordering::Relaxed);
            let reason = match why {
                Refusal::Full => format!(
                    "all {} connection slots are taken",
                    self.limits.max_connections
                ),
                Refusal::Address => "one address holds its share".to_string(),
            };
            tracing::warn!(
                "refused {n} connection(s) in the last {} s: {reason} (the latest from {ip}; \
                 {} open; limits: max_connections {}, connections_per_address {})",
                LOG_EVERY.as_secs(),
                self.open(),
                self.limits.max_connections,
                self.limits.per_address
            );
        }
    }

    fn may_log(&self) -> bool {
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// The kernel send buffer of each connection.
const SEND_BUFFER: usize = 64 * 1024;

/// Accept errors that concern one connection only (the next accept is fine).
fn connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves `app` on `listener` until `shutdown` resolves; then sets `closing` (every websocket
/// says `bye` 1001), stops accepting, lets in-flight requests finish and returns once every
/// connection is closed, or after `DRAIN`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    conns: Arc<Connections>,
    closing: tokio::sync::watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUF);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The connections' tasks, so that those still running after the drain can be ended.
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    if conns.may_log() {
                        tracing::warn!("cannot accept connections: {e} ({} open)", conns.open());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        };
        let slot = match conns.admit(addr.ip()) {
            Ok(s) => s,
            Err(why) => {
                conns.refused(why, addr.ip());
                // One try, never a wait: a client that does not read gets nothing.
                let _ = tcp.try_write(REFUSAL);
                drop(tcp);
                continue;
            }
        };
        // Small frames are the whole workload: no delayed-ACK stalls.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        // Bound what the kernel holds for one phone: thousands of phones on a Pi must not pin
        // megabytes each, and a phone that stops reading shows up as slow in seconds.
        if let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER) {
            tracing::debug!("SO_SNDBUF: {e}");
        }
        let ticket = ConnTicket(Arc::new(slot));
        let local = tcp.local_addr().ok().map(LocalAddr);
        let router = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(addr));
            if let Some(l) = local {
                req.extensions_mut().insert(l);
            }
            req.extensions_mut().insert(ticket.clone());
            router.clone().oneshot(req)
        });
        let conn = http
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!("connection from {addr}: {e}");
                    }
                }
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    // Websockets would keep the drain waiting: they say bye and close.
    closing.send_replace(true);
    stop_tx.send_replace(true);
    let mut open = conns.total.subscribe();
    if tokio::time::timeout(DRAIN, open.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection(s) still open {} s after the shutdown began; dropping them",
            conns.open(),
            DRAIN.as_secs()
        );
    }
    // What is left (a request waiting for a stalled body, say) ends now: it holds the state,
    // which the store waits for.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Binds the party's port with a backlog for every phone at once. `TcpListener::bind` asks
/// for 128, and when a Wi-Fi comes back and hundreds of phones reconnect in the same instant
/// (bench/resume.rs), the SYNs beyond it are dropped and those phones wait out TCP's one-second
/// retransmission. The kernel clamps the backlog to `net.core.somaxconn`.
pub fn listen(
    at: std::net::SocketAddr,
    max_connections: u32,
) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if at.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart rebinds while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(at)?;
    socket.listen(max_connections)
}

/// Raises the soft limit on open files to the hard one (outside systemd it is often 1,024)
/// and says so when it stays below what `max_connections` needs.
pub fn raise_fd_limit(max_connections: u32) {
    // The database, the audio device, the music being read, mDNS and the log.
    let needed = u64::from(max_connections) + 64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) if soft < needed => tracing::warn!(
            "the open files limit is {soft}, below the {needed} that max_connections \
             {max_connections} needs: connections will be refused before the cap \
             (raise LimitNOFILE= or `ulimit -n`, or lower max_connections)"
        ),
        Ok(soft) => tracing::debug!("open files limit: {soft}"),
        Err(e) => tracing::warn!("cannot read or raise the open files limit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_whole_json() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "busy");
    }

    #[test]
    fn the_reserve_keeps_room_for_new_addresses() {
        let conns = Connections::new(ConnLimits {
            max_connections: 16,
            per_address: 12,
        });
        let ip = |n: u8| IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n));
        // One address fills up to the reserve (16 - 16/8 = 14 would be the mark, but its own
        // share of 12 stops it first).
        let mut held: Vec<ConnSlot> = (0..12).map(|_| conns.admit(ip(1)).unwrap()).collect();
        assert_eq!(conns.admit(ip(1)).err(), Some(Refusal::Address));
        // A second address gets two; at 14 the reserve begins: it may not take a third...
        held.push(conns.admit(ip(2)).unwrap());
        held.push(conns.admit(ip(2)).unwrap());
        assert_eq!(conns.admit(ip(2)).err(), Some(Refusal::Address));
        // ...while new addresses still get in, up to the total.
        held.push(conns.admit(ip(3)).unwrap());
        held.push(conns.admit(ip(4)).unwrap());
        assert_eq!(conns.admit(ip(5)).err(), Some(Refusal::Full));
        assert_eq!(conns.open(), 16);
        held.truncate(10);
        assert_eq!(conns.open(), 10);
        assert!(conns.admit(ip(5)).is_ok());
        drop(held);
        assert_eq!(conns.open(), 0);
    }
}
