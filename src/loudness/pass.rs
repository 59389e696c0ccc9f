//! The background pass: measures every track of the library, one at a time, on a thread of
//! its own at the lowest priority the system has (SCHED_IDLE), so the audio, the phones and
//! the scan always come first. Its progress is the database: a stopped pass resumes where it
//! was, and a file that changes is measured again (the scan clears its measurement).
//!
//! Order: tracks asked for with [`Pass::prioritize`] (the next track to play: measured just in
//! time, even while a scan runs), then the queued requests, then the rest of the library
//! folder by folder. While a scan runs (a [`ScanHold`] is alive) the background work waits.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::measure::{measure_with, MeasureError};
use super::Levels;
use crate::party::TrackId;
use crate::store::{LoudnessCounts, LoudnessWork, Store};

/// How far the pass has got: tracks measured, tracks that cannot be measured (silent or
/// undecodable; not tried again until they change), and all present tracks. The pass is
/// through when `measured + failed == total`.
pub type Progress = LoudnessCounts;

/// Tracks read from the store at a time for the background work.
const BATCH: u32 = 16;

type OnMeasured = Box<dyn Fn(TrackId, Levels) + Send>;

/// The running pass. Dropping it stops the thread (within a few milliseconds, between two
/// chunks of audio); [`Pass::stop`] also waits for it.
pub struct Pass {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Holds the background work while a library scan runs; dropping it (when the scan ends,
/// however it ends) lets the pass go on, with the tracks the scan found or changed.
pub struct ScanHold(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    measured: AtomicU64,
    failed: AtomicU64,
    total: AtomicU64,
}

#[derive(Default)]
struct State {
    priority: VecDeque<TrackId>,
    /// Scans running.
    holds: usize,
    /// A scan ended since the work list was read: read it again.
    stale: bool,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Pass {
    /// Starts the pass over the tracks in `store`. `on_measured(track, levels)` is called on
    /// the pass's thread after each measurement is committed, for the measured track and for
    /// every other track whose levels changed with it (its album's tracks, when it completed
    /// the album); `levels` are the track's as now stored (so `loudness::gain` can be computed
    /// from them at once). Keep the callback short: send it to a channel.
    ///
    /// How the hub calls it:
    /// - once at start-up, after the store is open: `Pass::spawn(store.clone(), move |id,
    ///   levels| { let _ = internal_tx.send(Internal::Measured(id, levels)); })`, and keep the
    ///   `Pass` for the life of the hub;
    /// - before starting each library scan thread, `let hold = pass.scan_hold();` and move
    ///   `hold` into the scan thread's closure (it is dropped when the scan ends, however it
    ///   ends);
    /// - when a track becomes the preloaded next track and `track.levels.track_lufs` is
    ///   `None`, `pass.prioritize(track.id)`; when `Internal::Measured(id, levels)` arrives for
    ///   the preloaded (or the playing) item, recompute its gain and send `SetGain`;
    /// - `pass.progress()` for the host page (cheap: no database access);
    /// - at shutdown, drop the `Pass` (or `pass.stop()`) before waiting for the store to
    ///   close: the pass holds a store handle until its thread ends.
    pub fn spawn(
        store: Store,
        on_measured: impl Fn(TrackId, Levels) + Send + 'static,
    ) -> std::io::Result<Pass> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            measured: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            total: AtomicU64::new(0),
        });
        let worker = Worker {
            shared: shared.clone(),
            store,
            on_measured: Box::new(on_measured),
            skipped: HashSet::new(),
            served: HashSet::new(),
        };
        let thread = std::thread::Builder::new()
            .name("loudness".into())
            .spawn(move || worker.run())?;
        Ok(Pass {
            shared,
            thread: Some(thread),
        })
    }

    /// Measures `track` ahead of everything else (even while a scan runs), unless it is
    /// already measured. The latest asked for comes first.
    pub fn prioritize(&self, track: TrackId) {
        let mut st = self.shared.lock();
        st.priority.retain(|t| *t != track);
        st.priority.push_front(track);
        drop(st);
        self.shared.wake.notify_all();
    }

    /// How far the pass has got (as of its last measurement).
    pub fn progress(&self) -> Progress {
        Progress {
            measured: self.shared.measured.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            total: self.shared.total.load(Ordering::Relaxed),
        }
    }

    /// Holds the background work until the returned guard is dropped: take one before a
    /// library scan starts and drop it when the scan ends.
    pub fn scan_hold(&self) -> ScanHold {
        self.shared.lock().holds += 1;
        ScanHold(self.shared.clone())
    }

    /// Stops the pass and waits for its thread. What was measured is kept; the measurement
    /// under way is dropped and done again next time.
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn signal_stop(&self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

impl Drop for ScanHold {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.holds = st.holds.saturating_sub(1);
        st.stale = true;
        drop(st);
        self.0.wake.notify_all();
    }
}

struct Worker {
    shared: Arc<Shared>,
    store: Store,
    on_measured: OnMeasured,
    /// Tracks left for this run: their file was missing (the next scan marks them absent).
    skipped: HashSet<TrackId>,
    /// Tracks measured on request since the batch was read (the batch may hold them too).
    served: HashSet<TrackId>,
}

/// What the next step of the pass is.
enum Next {
    Priority(TrackId),
    Background,
    Stop,
}

impl Worker {
    fn run(mut self) {
        lowest_priority();
        let mut batch: VecDeque<LoudnessWork> = VecDeque::new();
        let mut exhausted = false;
        loop {
            match self.next(batch.is_empty() && exhausted) {
                Next::Stop => return,
                Next::Priority(id) => {
                    if self.priority(id).is_err() {
                        return;
                    }
                }
                Next::Background => {
                    if std::mem::take(&mut self.shared.lock().stale) {
                        batch.clear();
                        self.skipped.clear();
                    }
                    if batch.is_empty() {
                        self.served.clear();
                        match self.fetch() {
                            Ok(b) => batch = b,
                            Err(()) => return,
                        }
                        exhausted = batch.is_empty();
                        continue;
                    }
                    if let Some(w) = batch.pop_front() {
                        if self.served.contains(&w.id) {
                            continue;
                        }
                        if self.measure(&w, true).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Waits for something to do. `idle`: the background work is done (until a scan ends).
    fn next(&self, idle: bool) -> Next {
        let mut st = self.shared.lock();
        loop {
            if st.stop {
                return Next::Stop;
            }
            if let Some(id) = st.priority.pop_front() {
                return Next::Priority(id);
            }
            if st.holds == 0 && (!idle || st.stale) {
                return Next::Background;
            }
            st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The next tracks to measure, and the counts for [`Pass::progress`].
    fn fetch(&self) -> Result<VecDeque<LoudnessWork>, ()> {
        let res = self
            .store
            .read_blocking(|db| Ok((db.loudness_todo(BATCH)?, db.loudness_counts()?)));
        match res {
            Ok((todo, counts)) => {
                self.shared
                    .measured
                    .store(counts.measured, Ordering::Relaxed);
                self.shared.failed.store(counts.failed, Ordering::Relaxed);
                self.shared.total.store(counts.total, Ordering::Relaxed);
                Ok(todo
                    .into_iter()
                    .filter(|w| !self.skipped.contains(&w.id))
                    .collect())
            }
            Err(e) => {
                tracing::warn!("loudness pass stops: {e}");
                Err(())
            }
        }
    }

    /// A track asked for: measured now unless it already is (or is gone).
    fn priority(&mut self, id: TrackId) -> Result<(), ()> {
        match self.store.read_blocking(move |db| db.loudness_pending(id)) {
            Ok(Some(w)) => {
                self.served.insert(id);
                self.measure(&w, false)
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!("loudness pass stops: {e}");
                Err(())
            }
        }
    }

    /// Measures one track and stores the outcome. A background measurement serves tracks
    /// asked for meanwhile (in the middle of it, so no work is lost) and waits while a scan
    /// runs; a priority one only stops for a stop. `Err` when the pass must end.
    fn measure(&mut self, w: &LoudnessWork, background: bool) -> Result<(), ()> {
        let shared = self.shared.clone();
        let mut failed_inside = false;
        let outcome = {
            let mut keep_going = || -> bool {
                loop {
                    let mut st = shared.lock();
                    if st.stop {
                        return false;
                    }
                    if !background {
                        return true;
                    }
                    if let Some(id) = st.priority.pop_front() {
                        drop(st);
                        // This very track: its measurement is under way already.
                        if id != w.id && self.priority(id).is_err() {
                            failed_inside = true;
                            return false;
                        }
                        continue;
                    }
                    if st.holds == 0 {
                        return true;
                    }
                    // A scan runs: wait for it (or for a track asked for, or a stop).
                    let _st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            // A decoder that panics on a malformed file must not end the pass.
            crate::untrusted::guarded(|| measure_with(&w.path, &mut keep_going)).unwrap_or_else(
                |_| {
                    Err(MeasureError::Decode(
                        "the decoder failed on this file".into(),
                    ))
                },
            )
        };
        if failed_inside {
            return Err(());
        }
        let record = match outcome {
            Ok(m) => Ok(m),
            Err(MeasureError::Stopped) => return Ok(()),
            Err(e @ MeasureError::Decode(_)) if !w.path.exists() => {
                // Gone (an unplugged drive, a file moved): not the file's fault; the next scan
                // marks it absent, or finds it again.
                tracing::debug!("loudness: {} is gone: {e}", w.path.display());
                self.skipped.insert(w.id);
                return Ok(());
            }
            Err(e) => {
                tracing::info!("loudness: cannot measure {}: {e}", w.path.display());
                Err(e.to_string())
            }
        };
        let ok = record.is_ok();
        let work = w.clone();
        let changed = match self
            .store
            .write_blocking(move |db| db.record_loudness(&work, record))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("loudness pass stops: {e}");
                return Err(());
            }
        };
        if changed.iter().any(|(id, _)| *id == w.id) {
            tracing::debug!("loudness: measured {}", w.path.display());
            let counter = if ok {
                &self.shared.measured
            } else {
                &self.shared.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        for (id, levels) in changed {
            (self.on_measured)(id, levels);
        }
        Ok(())
    }
}

/// SCHED_IDLE, and nice 19 for kernels without it: the pass runs only on CPU time nothing
/// else wants.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        use thread_priority::ThreadPriority;
        let idle = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        );
        if let Err(e) = idle {
            tracing::debug!("loudness pass: no SCHED_IDLE ({e:?}); trying nice 19");
            let nice = set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
            );
            if let Err(e) = nice {
                tracing::warn!("loudness pass runs at normal priority: {e:?}");
            }
        }
    }
}
