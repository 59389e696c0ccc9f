//! Shared helpers for the integration tests: real audio files made with ffmpeg, a temporary
//! folder per test, and the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Writes a tagged sine tone with ffmpeg. `ext` picks the container and codec.
pub fn tone(dir: &Path, name: &str, freq: u32, secs: f64, tags: &[(&str, &str)]) -> PathBuf {
    let mut cmd = media::ffmpeg();
    media::sine(&mut cmd, freq, secs, 44_100).args(["-ar", "44100"]);
    media::tags(&mut cmd, tags);
    if name.ends_with(".m4a") {
        cmd.args(["-c:a", "aac", "-b:a", "128k"]);
    }
    if name.ends_with(".opus") {
        cmd.args(["-c:a", "libopus", "-ar", "48000"]);
    }
    if name.ends_with(".ogg") {
        cmd.args(["-c:a", "libvorbis"]);
    }
    media::write(&mut cmd, &dir.join(name))
}

/// Rewrites the file at `path` with `write`, and makes sure its modification time moves as a
/// later edit's would: a file system's clock can be coarser than a test is quick, and the
/// scanner tells a changed file by its size and modification time.
pub fn rewrite(path: &Path, write: impl FnOnce()) {
    let before = std::fs::metadata(path).unwrap().modified().unwrap();
    write();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    if file.metadata().unwrap().modified().unwrap() <= before {
        file.set_modified(before + Duration::from_secs(1)).unwrap();
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("jukebox-test-")
        .tempdir()
        .expect("temp dir")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_jukebox")
}

/// The release binary, for what measures the jukebox on a budget: `JUKEBOX_RELEASE_BIN`, or
/// the binary cargo built for this test when it built a release (`cargo test --release`). A
/// debug build would measure the compiler's work, not the jukebox's.
pub fn release_bin() -> PathBuf {
    let bin = std::env::var("JUKEBOX_RELEASE_BIN").unwrap_or_else(|_| bin().to_string());
    assert!(
        !bin.contains("/debug/"),
        "{bin} is a debug build: set JUKEBOX_RELEASE_BIN=target/release/jukebox (after cargo \
         build --release) or run cargo test --release"
    );
    let bin = PathBuf::from(bin);
    assert!(bin.is_file(), "no release binary at {}", bin.display());
    bin
}

use std::sync::Arc;

pub mod answer;
pub mod live;
pub mod media;
pub mod party;
pub mod snap;
pub mod wait;
use std::time::Duration;

use jukebox::config::OutputSpec;
use jukebox::hub::{
    Actor, Answer, Change, Command, Connection, GuestCreated, Hub, HubConfig, HubTask, Published,
    Reply,
};
use jukebox::party::Settings;
use jukebox::store::Store;
use tokio::sync::broadcast;

/// A music folder of `n` distinct tones (`secs` long, artists "Artist 0".., titles "Song 0"..).
pub fn music(dir: &Path, n: usize, secs: f64) -> PathBuf {
    let m = dir.join("music");
    std::fs::create_dir_all(&m).unwrap();
    let exts = ["flac", "ogg", "wav", "mp3"];
    for i in 0..n {
        let ext = exts[i % exts.len()];
        tone(
            &m,
            &format!("{i:02}.{ext}"),
            220 + 110 * i as u32,
            secs,
            &[
                ("title", &format!("Song {i}")),
                ("artist", &format!("Artist {i}")),
            ],
        );
    }
    m
}

pub struct TestHub {
    pub hub: Hub,
    pub task: Option<HubTask>,
    pub store: Store,
    pub store_thread: Option<std::thread::JoinHandle<()>>,
    pub rx: broadcast::Receiver<Arc<Published>>,
    /// The live sockets the tests opened, as the websocket layer holds them.
    pub sockets: std::sync::Mutex<Vec<(jukebox::party::GuestId, Connection)>>,
}

impl TestHub {
    pub async fn start(db: &Path, music: &Path, settings: Settings) -> TestHub {
        let (store, store_thread) = Store::open(db).unwrap();
        let (hub, task) = Hub::start(
            HubConfig {
                name: "jukebox".into(),
                music: music.to_owned(),
                output: OutputSpec::Null,
                settings,
                explicit_settings: vec![],
                guest_limits: Default::default(),
                snapcast_rpc: None,
            },
            store.clone(),
        )
        .await
        .unwrap();
        let rx = hub.subscribe();
        TestHub {
            hub,
            task: Some(task),
            store,
            store_thread: Some(store_thread),
            rx,
            sockets: Default::default(),
        }
    }

    pub async fn call(&self, cmd: Command) -> Answer {
        self.hub.call(cmd).await
    }

    pub async fn ok(&self, cmd: Command) -> Reply {
        let dbg = format!("{cmd:?}");
        let a = self.hub.call(cmd).await;
        a.result.unwrap_or_else(|e| panic!("{dbg}: {e}"))
    }

    /// A new guest with one socket open.
    pub async fn guest(&self, name: &str) -> Actor {
        let g = self.new_guest(name).await;
        self.connect(&g).await
    }

    /// A new guest's token, not connected yet.
    pub async fn new_guest(&self, name: &str) -> GuestCreated {
        match self
            .ok(Command::CreateGuest {
                name: Some(name.into()),
                host: false,
            })
            .await
        {
            Reply::Guest(g) => g,
            other => panic!("{other:?}"),
        }
    }

    /// Opens a socket of this guest the way the websocket layer does: `Connect` counts it,
    /// and the hub's guard (kept in `sockets`) uncounts it when dropped.
    pub async fn connect(&self, g: &GuestCreated) -> Actor {
        match self
            .ok(Command::Connect {
                token: g.token.clone(),
                addr: None,
            })
            .await
        {
            Reply::Identity(Some(_)) => {}
            other => panic!("connect {}: {other:?}", g.name),
        }
        let guard = self.hub.connection(g.guest_id, None);
        self.sockets.lock().unwrap().push((g.guest_id, guard));
        Actor {
            guest: g.guest_id,
            host: false,
        }
    }

    /// Closes one socket of this guest (as when its websocket ends).
    pub fn disconnect(&self, guest: jukebox::party::GuestId) {
        let mut sockets = self.sockets.lock().unwrap();
        let i = sockets
            .iter()
            .position(|(g, _)| *g == guest)
            .expect("a socket of this guest is open");
        drop(sockets.remove(i));
    }

    pub async fn host(&self) -> Actor {
        match self
            .ok(Command::CreateGuest {
                name: Some("DJ".into()),
                host: true,
            })
            .await
        {
            Reply::Guest(g) => Actor {
                guest: g.guest_id,
                host: true,
            },
            other => panic!("{other:?}"),
        }
    }

    pub async fn snapshot(&self) -> jukebox::hub::Snapshot {
        match self
            .ok(Command::Snapshot {
                guest: None,
                admin: true,
                history: true,
            })
            .await
        {
            Reply::Snapshot(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    /// Waits (bounded) for a published change matching `pred`, returning it.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Change) -> bool) -> Arc<Published> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Ok(p)) if pred(&p.change) => return p,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("waiting for {what}: {e}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Waits until something is playing and returns the snapshot.
    pub async fn playing(&mut self) -> jukebox::hub::Snapshot {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.snapshot().await;
            if s.now_playing.is_some() {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing started playing"
            );
            self.wait_for("now playing", |c| matches!(c, Change::NowPlaying(Some(_))))
                .await;
        }
    }

    pub async fn stop(mut self) {
        self.sockets.lock().unwrap().clear();
        let task = self.task.take().unwrap();
        self.hub.shutdown(task).await;
        drop(self.hub);
        drop(self.store);
        let t = self.store_thread.take().unwrap();
        tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
    }
}
