//! Snapcast from Debian, run by the tests: a snapserver with a pipe source on loopback ports of
//! its own, and snapclients that "play" to their stdout, read as a sound card would be, with the
//! wall-clock time of every read (to tell when each sample is heard).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

pub const RATE: f64 = 48_000.0;
/// Bytes of one frame: 16-bit stereo.
pub const FRAME: usize = 4;

/// Fails with the command that installs it when a Snapcast program is missing.
fn need(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is missing: ./scripts/deps.sh test installs snapserver and snapclient"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Snapserver {
    child: Option<Child>,
    conf: PathBuf,
    pub fifo: PathBuf,
    pub stream_port: u16,
    pub control_port: u16,
    pub log: Arc<Mutex<String>>,
}

impl Snapserver {
    /// A snapserver whose pipe source `jukebox` is `fifo` (created by snapserver), PCM codec
    /// (so what the clients play is bit for bit what was written), `buffer_ms` end to end.
    pub fn start(dir: &Path, fifo: &Path, buffer_ms: u32) -> Snapserver {
        Self::start_with(dir, fifo, buffer_ms, "")
    }

    /// [`Snapserver::start`] with `script` as the source's stream plugin (`controlscript=`).
    pub fn with_plugin(dir: &Path, fifo: &Path, buffer_ms: u32, script: &Path) -> Snapserver {
        Self::start_with(
            dir,
            fifo,
            buffer_ms,
            &format!("&controlscript={}", script.display()),
        )
    }

    fn start_with(dir: &Path, fifo: &Path, buffer_ms: u32, more: &str) -> Snapserver {
        need("snapserver");
        let (stream_port, control_port) = (free_port(), free_port());
        let data = dir.join("snapserver-data");
        std::fs::create_dir_all(&data).unwrap();
        let conf = dir.join("snapserver.conf");
        std::fs::write(
            &conf,
            format!(
                "[server]\ndatadir = {}\n\
                 [http]\nenabled = false\n\
                 [tcp]\nenabled = true\nbind_to_address = 127.0.0.1\nport = {control_port}\n\
                 [stream]\nbind_to_address = 127.0.0.1\nport = {stream_port}\nbuffer = {buffer_ms}\n\
                 source = pipe://{}?name=jukebox&sampleformat=48000:16:2&codec=pcm&mode=create{more}\n\
                 [logging]\nsink = stdout\nfilter = *:info\n",
                data.display(),
                fifo.display()
            ),
        )
        .unwrap();
        let mut s = Snapserver {
            child: None,
            conf,
            fifo: fifo.to_owned(),
            stream_port,
            control_port,
            log: Arc::default(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut child = Command::new("snapserver")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("snapserver starts");
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = self.log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        self.child = Some(child);
        let t = Instant::now();
        while self.try_rpc("Server.GetRPCVersion", json!({})).is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "snapserver answers on its control port: {}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again after [`Snapserver::kill`], on the same ports and pipe.
    /// The process id of the running snapserver.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("snapserver runs").id()
    }

    /// Sends `signal` (`STOP`, `CONT`) to snapserver: a hung one, and one that goes on.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("snapserver runs").id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} snapserver");
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// One JSON-RPC call on the control port; `None` when it cannot be reached.
    pub fn try_rpc(&self, method: &str, params: Value) -> Option<Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.control_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = json!({"id": 1, "jsonrpc": "2.0", "method": method, "params": params});
        s.write_all(format!("{req}\r\n").as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        // Notifications may come first: the reply is the line with our id.
        for _ in 0..100 {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let v: Value = serde_json::from_str(line.trim()).ok()?;
            if v["id"] == 1 {
                return Some(v);
            }
        }
        None
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|| panic!("snapserver answers {method}"))
    }

    /// The ids of the clients snapserver has connected.
    pub fn connected_clients(&self) -> Vec<String> {
        let status = self.rpc("Server.GetStatus", json!({}));
        let mut ids = Vec::new();
        for g in status["result"]["server"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for c in g["clients"].as_array().into_iter().flatten() {
                if c["connected"] == true {
                    ids.push(c["id"].as_str().unwrap_or_default().to_string());
                }
            }
        }
        ids
    }
}

impl Drop for Snapserver {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- snapserver's log ---\n{}",
                self.log.lock().unwrap_or_else(|e| e.into_inner())
            );
        }
        self.kill();
    }
}

/// A control client of snapserver's (like Snapweb): it gets every notification, and sends
/// requests of its own.
pub struct Listener {
    stream: TcpStream,
    heard: Arc<Mutex<Vec<Value>>>,
    next_id: u64,
}

impl Listener {
    pub fn connect(server: &Snapserver) -> Listener {
        let stream = TcpStream::connect(("127.0.0.1", server.control_port)).unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (h, r) = (heard.clone(), stream.try_clone().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                    h.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                }
            }
        });
        let mut listener = Listener {
            stream,
            heard,
            next_id: 1000,
        };
        // `connect` returns once the kernel has the connection, which can be before snapserver
        // has accepted it and put it on its list of sessions to notify: a change made in that
        // window is never told to this listener. A reply proves the session is on the list.
        listener.request("Server.GetRPCVersion", json!({}));
        listener
    }

    /// Sends a request; returns its reply (bounded wait).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let req = json!({"id": id, "jsonrpc": "2.0", "method": method, "params": params});
        self.stream
            .write_all(format!("{req}\r\n").as_bytes())
            .unwrap();
        let t = std::time::Instant::now();
        loop {
            // Only the reply is taken: notifications before it are still to be looked at.
            {
                let mut h = self.heard.lock().unwrap();
                if let Some(i) = h.iter().position(|v| v["id"] == id) {
                    return h.remove(i);
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no reply to {method}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The first message so far or within `limit` that `pred` accepts; every message is
    /// looked at once, in order.
    pub fn wait(&self, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let t = std::time::Instant::now();
        loop {
            {
                let mut h = self.heard.lock().unwrap();
                if let Some(i) = h.iter().position(&pred) {
                    return h.drain(..=i).next_back().unwrap();
                }
            }
            if t.elapsed() >= limit {
                // Formatted before the panic, so that the lock is not held (and poisoned) by it.
                let heard = format!("{:?}", self.heard.lock().unwrap());
                panic!("timed out after {limit:?} waiting for {what}; heard {heard}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// What a client has played so far: the bytes, and when each read of them ended.
#[derive(Default)]
struct Played {
    bytes: Vec<u8>,
    /// (the wall-clock time of a read, the total bytes once it was read)
    reads: Vec<(SystemTime, usize)>,
}

pub struct Snapclient {
    child: Child,
    played: Arc<Mutex<Played>>,
    pub id: String,
}

impl Snapclient {
    /// A snapclient of `server` with `--hostID host_id` and `-i instance` (its id is `host_id`
    /// for instance 1, `host_id#N` for another), playing to its stdout.
    pub fn start(server: &Snapserver, host_id: &str, instance: u32) -> Snapclient {
        need("snapclient");
        let mut child = Command::new("snapclient")
            .args(["-h", "127.0.0.1", "-p", &server.stream_port.to_string()])
            .args(["-i", &instance.to_string(), "--hostID", host_id])
            .args(["--player", "file:filename=stdout", "--logsink", "null"])
            // No software volume: what snapserver sends, as it is (the volume is snapserver's
            // to report, and the jukebox's to apply).
            .args(["--mixer", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("snapclient starts");
        let played = Arc::new(Mutex::new(Played::default()));
        let (p, mut out) = (played.clone(), child.stdout.take().unwrap());
        // It must be read all the time, as a sound card would: a full pipe stalls its player.
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let now = SystemTime::now();
                let mut p = p.lock().unwrap();
                p.bytes.extend_from_slice(&buf[..n]);
                let total = p.bytes.len();
                p.reads.push((now, total));
            }
        });
        let id = if instance == 1 {
            host_id.to_string()
        } else {
            format!("{host_id}#{instance}")
        };
        Snapclient { child, played, id }
    }

    /// Everything played so far, as 16-bit samples.
    pub fn samples(&self) -> Vec<i16> {
        let p = self.played.lock().unwrap();
        p.bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    /// When the frame at `frame` (counted from the first byte played) was heard.
    ///
    /// snapclient's file player writes, every 50 ms, the 50 ms of audio due from 10 ms on
    /// (its DAC delay), and when its timer is late it goes on from the present rather than
    /// catching up, so its output falls behind the wall clock now and then: only the reads
    /// just after the frame say when it was heard. Each read ending `n` frames after it says
    /// "at most `n` frames ago, plus the chunk and the DAC delay"; the reader's own lateness
    /// only adds, so the earliest of them is taken.
    pub fn heard_at(&self, frame: usize) -> SystemTime {
        const PLAYER_AHEAD: Duration = Duration::from_millis(60);
        let p = self.played.lock().unwrap();
        p.reads
            .iter()
            .map(|(t, total)| (*t, total / FRAME))
            .filter(|(_, end)| *end > frame && *end <= frame + RATE as usize / 2)
            .map(|(t, end)| t - Duration::from_secs_f64((end - frame) as f64 / RATE) + PLAYER_AHEAD)
            .min()
            .expect("reads just after that frame")
    }

    /// The snapclient's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Frames played so far.
    pub fn frames(&self) -> usize {
        self.played.lock().unwrap().bytes.len() / FRAME
    }
}

impl Drop for Snapclient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interleaved 16-bit samples of a WAV file.
pub fn wav_samples(path: &Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .unwrap()
        .samples::<i16>()
        .map(|s| s.unwrap())
        .collect()
}
