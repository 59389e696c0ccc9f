//! The library scan as the hub sees it: whether one runs, its progress for the room, and the
//! flag that tells it to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::views::ScanView;
use crate::library::ScanProgress;

#[derive(Default)]
pub(crate) struct Scan {
    /// The latest progress (the room shows it); kept, done, after the scan ended.
    view: Option<ScanView>,
    running: bool,
    cancel: Arc<AtomicBool>,
}

impl Scan {
    /// A scan starts, unless one runs: its progress starts at zero. Returns the flag the scan
    /// thread must watch.
    pub(crate) fn start(&mut self) -> Option<Arc<AtomicBool>> {
        if self.running {
            return None;
        }
        self.running = true;
        self.view = Some(ScanView {
            files: 0,
            read: 0,
            done: false,
        });
        Some(self.cancel.clone())
    }

    /// The scan thread could not be started.
    pub(crate) fn not_started(&mut self) {
        self.running = false;
    }

    pub(crate) fn progress(&mut self, p: ScanProgress) {
        self.view = Some(p.into());
    }

    /// The scan is over, however it ended: nobody should wait for it (the host's progress
    /// bar, systemd's READY on a first start).
    pub(crate) fn ended(&mut self) {
        self.running = false;
        if let Some(v) = self.view.as_mut() {
            v.done = true;
        }
    }

    pub(crate) fn view(&self) -> Option<ScanView> {
        self.view
    }

    /// Tells a running scan to stop (shutdown).
    pub(crate) fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scan_at_a_time_and_its_end_is_shown_as_done() {
        let mut s = Scan::default();
        assert!(s.view().is_none());
        let flag = s.start().expect("starts");
        assert!(s.start().is_none(), "one at a time");
        s.progress(ScanProgress {
            files: 10,
            read: 3,
            done: false,
        });
        assert_eq!(
            s.view().map(|v| (v.files, v.read, v.done)),
            Some((10, 3, false))
        );
        s.ended();
        assert!(s.view().is_some_and(|v| v.done));
        assert!(s.start().is_some(), "a rescan may start");
        s.cancel();
        assert!(flag.load(Ordering::Relaxed));
    }
}
