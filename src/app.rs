//! Start-up and shutdown of a running jukebox: prepares the music folder (or the demo
//! library), opens the store, makes sure a host PIN exists, starts the hub (which resumes the
//! music and rescans the library in the background), and on SIGINT/SIGTERM stops in order:
//! the hub finishes its last commit and finalises the audio output, then the store thread
//! checkpoints and closes the database.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::hub::{Hub, HubConfig};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("demo library: {0}")]
    Demo(#[from] crate::demo::DemoError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// The parts of a started jukebox that the caller (main, or a test) holds.
pub struct Running {
    pub hub: Hub,
    pub store: Store,
    /// The hash of the host PIN in use.
    pub pin_hash: String,
    task: crate::hub::HubTask,
    store_thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops in order and returns when the database is closed.
    pub async fn shutdown(self) {
        self.hub.shutdown(self.task).await;
        drop(self.hub);
        drop(self.store);
        let thread = self.store_thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

/// Where the demo library goes: beside the database, so it survives restarts.
pub fn demo_dir(db: &Path) -> PathBuf {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("demo-music")
}

pub async fn start(config: &Config) -> Result<Running, AppError> {
    let (running, _) = start_with_music(config).await?;
    Ok(running)
}

/// Starts, and returns the music folder in use (the demo folder with `--demo`).
async fn start_with_music(config: &Config) -> Result<(Running, PathBuf), AppError> {
    let music = if config.demo {
        let dir = demo_dir(&config.db);
        let d = dir.clone();
        let files = tokio::task::spawn_blocking(move || crate::demo::generate(&d))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        tracing::info!("demo library: {} tracks in {}", files.len(), dir.display());
        dir
    } else {
        if !config.music.is_dir() {
            tracing::warn!(
                "music folder {} does not exist; starting with what the database knows. \
                 Create it (or pass --music DIR) and rescan from the host page",
                config.music.display()
            );
        }
        config.music.clone()
    };
    if let Some(dir) = config.db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let (store, store_thread) = Store::open(&config.db)?;
    let pin_hash = ensure_host_pin(&store, config.host_pin.clone()).await?;
    let (hub, task) =
        Hub::start(HubConfig::from_config(config, music.clone()), store.clone()).await?;
    Ok((
        Running {
            hub,
            store,
            pin_hash,
            task,
            store_thread,
        },
        music,
    ))
}

/// The hash of the configured PIN, or of the one generated on first start. A generated PIN
/// exists only in this log line (`journalctl -u jukebox`): the store keeps a salted hash. A
/// PIN that is not the one of the last start logs out every host.
async fn ensure_host_pin(store: &Store, configured: Option<String>) -> Result<String, StoreError> {
    let setup = store
        .write(move |db| crate::login::prepare_pin(db, configured.as_deref()))
        .await?;
    if setup.revoked > 0 {
        tracing::info!(
            "the host PIN changed: {} host logins were logged out",
            setup.revoked
        );
    }
    match &setup.generated {
        Some(pin) => tracing::info!(
            "host PIN: {pin} (shown only now; set --host-pin to choose your own, or run \
             `jukebox reset-pin` to get a new one)"
        ),
        None => tracing::info!(
            "host PIN: as set before (lost it? stop the jukebox and run `jukebox reset-pin`)"
        ),
    }
    Ok(setup.hash)
}

/// The library is loaded: at once when the database knew tracks at start (their rescan runs
/// on in the background); on a first start, when the first scan is over, while systemd is told
/// to keep waiting and how far it got. Returns the number of tracks.
async fn library_loaded(hub: &Hub) -> u64 {
    loop {
        let Ok(s) = hub.snapshot(None, false, false).await.result else {
            return 0;
        };
        let room = &s.room;
        match &room.scan {
            Some(scan) if room.library_size == 0 && !scan.done => {
                crate::notify::extend_start(std::time::Duration::from_secs(30));
                crate::notify::status(&format!(
                    "scanning the library: {} of {} files",
                    scan.read, scan.files
                ));
            }
            _ => return room.library_size,
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Starts serving MPD clients on `mpd_listen`; where, once bound. A port that is taken costs
/// the MPD clients, never the party.
async fn serve_mpd(
    config: &Config,
    state: &Arc<crate::server::AppState>,
    music: &std::path::Path,
) -> Option<std::net::SocketAddr> {
    let at = config.mpd_listen;
    match tokio::net::TcpListener::bind(at).await {
        Ok(l) => {
            let bound = l.local_addr().unwrap_or(at);
            tracing::info!("MPD clients on {bound}");
            tokio::spawn(crate::mpd::serve(
                l,
                state.clone(),
                music.to_owned(),
                config.output.to_string(),
            ));
            Some(bound)
        }
        Err(e) => {
            tracing::warn!("MPD clients: cannot listen on {at} ({e}); going on without");
            None
        }
    }
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs the jukebox until a shutdown signal: the engine, then the live server.
pub async fn run(config: Config) -> Result<(), AppError> {
    crate::server::transport::raise_fd_limit(config.limits.max_connections);
    let listener = crate::server::transport::listen(config.listen, config.limits.max_connections)
        .map_err(|e| AppError::Listen {
        addr: config.listen,
        source: e,
    })?;
    crate::notify::status("loading the library");
    let (running, music) = start_with_music(&config).await?;
    tracing::info!(
        "jukebox {} running: music from {}, database {}",
        env!("CARGO_PKG_VERSION"),
        music.display(),
        config.db.display()
    );
    let login = crate::login::Login {
        pin: crate::login::PinGuard::new(
            running.pin_hash.clone(),
            crate::login::PinLimits {
                per_addr_per_minute: config.limits.login_rate,
                budget: config.limits.login_budget,
                window: std::time::Duration::from_secs(config.limits.login_budget_seconds.into()),
            },
        ),
        sessions: crate::login::HostSessions::load(
            running.store.clone(),
            std::time::Duration::from_secs(u64::from(config.limits.host_token_hours) * 3600),
        )
        .await?,
    };
    let state = crate::server::state(
        running.hub.clone(),
        running.store.clone(),
        crate::server::ServerConfig {
            login: Arc::new(login),
            guest_rate: config.limits.guest_rate,
            allowed_origins: config.allow_origin.clone(),
            ws_limits: crate::server::WsLimits::from_limits(&config.limits),
            session_limits: crate::server::session::SessionLimits::from_limits(&config.limits),
            web_dir: config.web_dir.clone(),
            host_name: format!("{}.local", crate::mdns::label_for(&config.name)),
            listen: listener.local_addr()?,
            allow_hosts: config.allow_host.clone(),
            wifi: config
                .wifi_ssid
                .clone()
                .map(|ssid| crate::server::wifi::Wifi::new(ssid, config.wifi_password.clone())),
            captive_portal: config.captive_portal,
            conn_limits: crate::server::transport::ConnLimits {
                max_connections: config.limits.max_connections as usize,
                per_address: config.limits.connections_per_address as usize,
            },
            rooms: config
                .snapcast_rpc
                .map(|a| crate::rooms::Rooms::start(a, running.hub.clone())),
        },
    );
    let addr = listener.local_addr()?;
    let mpd = if config.no_mpd {
        None
    } else {
        serve_mpd(&config, &state, &music).await
    };
    let mdns = if !config.no_mdns {
        let s = state.clone();
        let name = config.name.clone();
        tokio::task::spawn_blocking(move || {
            crate::mdns::start(
                &name,
                addr,
                mpd,
                Arc::new(move |host| s.join.set_host(host)),
            )
        })
        .await
        .ok()
        .flatten()
    } else {
        None
    };
    tracing::info!("listening on http://{addr}");
    // READY=1 once the port is bound (connections wait in its backlog) and the library is
    // loaded; phones are served meanwhile.
    let (hub, output) = (running.hub.clone(), config.output.clone());
    tokio::spawn(async move {
        let tracks = library_loaded(&hub).await;
        crate::notify::ready(&format!(
            "serving http://{addr} ({tracks} tracks), audio: {output}"
        ));
    });
    // On a worker of the runtime, not in the main thread's block_on: a connection it accepts
    // is then spawned on that worker's own queue, and no thread is woken to take it in (perf:
    // the accept loop on the main thread was a tenth of the CPU a phone's join cost, most of
    // it threads waking each other).
    match tokio::spawn(crate::server::serve(listener, state, shutdown_signal())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("the server stopped: {e}"),
        Err(e) => tracing::error!("the server stopped: {e}"),
    }
    crate::notify::stopping();
    tracing::info!("shutting down");
    if let Some(m) = mdns {
        let _ = tokio::task::spawn_blocking(move || m.shutdown()).await;
    }
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
