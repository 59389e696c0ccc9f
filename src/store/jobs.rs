//! The store thread: jobs in submission order, consecutive writes group committed (each in
//! its own savepoint), completions after the commit.

use super::*;

type Work = Box<dyn FnOnce(&Db) -> Result<(), StoreError> + Send>;
type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Job {
    /// Runs inside the group transaction; `done` runs after the commit.
    Write { work: Work, done: Done },
    /// Runs after every write submitted before it has been committed.
    Read(Box<dyn FnOnce(&Db) + Send>),
}

/// A cheap, cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
}

/// Most jobs one transaction takes; bounds the latency a big burst adds to its first job.
const MAX_GROUP: usize = 512;

impl Store {
    /// Opens (creating or migrating) the database and starts the store thread. The thread
    /// ends when every handle has been dropped and the jobs queued before that are done.
    pub fn open(path: &Path) -> Result<(Store, std::thread::JoinHandle<()>), StoreError> {
        let db = Db::open(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || run(db, rx))
            .map_err(StoreError::Thread)?;
        Ok((Store { tx }, handle))
    }

    // The verbs. Every job runs on the store thread in the order it was submitted, so a read
    // sees every write submitted before it, from any handle. Writes are group committed;
    // reads never join a group (a read first commits the group before it).

    /// Queues a write and returns at once. `after_commit` gets the outcome once the
    /// transaction holding the write is durable, or the refusal if it was rolled back; these
    /// callbacks run in submission order on the store thread. The hub publishes from them, so
    /// nothing is announced before it is on disk, and changes are announced in the order made.
    pub fn queue_write(
        &self,
        work: impl FnOnce(&Db) -> Result<(), StoreError> + Send + 'static,
        after_commit: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let job = Job::Write {
            work: Box::new(work),
            done: Box::new(after_commit),
        };
        if let Err(mpsc::SendError(Job::Write { done, .. })) = self.tx.send(job) {
            done(Err(StoreError::Closed));
        }
    }

    /// Queues a read and returns at once; `f` runs on the store thread after every write
    /// submitted before it has been committed. `f` sends its answer where it needs to go (the
    /// hub's internal channel). Fails only when the store has shut down.
    pub fn queue_read(&self, f: impl FnOnce(&Db) + Send + 'static) -> Result<(), StoreError> {
        self.tx
            .send(Job::Read(Box::new(f)))
            .map_err(|_| StoreError::Closed)
    }

    /// Reads on the store thread (after every write submitted before it) and awaits the value.
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue_read(move |db| {
            let _ = tx.send(f(db));
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Writes and awaits the value once it is committed: an `Ok` is durable. For writes whose
    /// caller answers someone (the login's sessions, the host PIN at start).
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slot = self.write_into_slot(f, move |res| {
            let _ = tx.send(res);
        });
        rx.await.map_err(|_| StoreError::Closed)??;
        take(&slot)
    }

    /// [`Store::read`] for threads outside the runtime (the library scanner, tools): blocks the
    /// calling thread. Never call it on the store thread or an async worker.
    pub fn read_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.queue_read(move |db| {
            let _ = tx.send(f(db));
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write`] for threads outside the runtime (the library scanner): blocks the
    /// calling thread until the write is committed. Never call it on the store thread or an
    /// async worker.
    pub fn write_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let slot = self.write_into_slot(f, move |res| {
            let _ = tx.send(res);
        });
        rx.recv().map_err(|_| StoreError::Closed)??;
        take(&slot)
    }

    /// Queues `f` as a write whose value lands in the returned slot; `after_commit` runs after
    /// the commit (the slot is only worth reading once it has said `Ok`).
    fn write_into_slot<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
        after_commit: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Slot<R> {
        let slot: Slot<R> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.queue_write(
            move |db| {
                let r = f(db)?;
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                Ok(())
            },
            after_commit,
        );
        slot
    }
}

type Slot<R> = Arc<Mutex<Option<R>>>;

fn take<R>(slot: &Slot<R>) -> Result<R, StoreError> {
    let value = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    value.ok_or(StoreError::Closed)
}

fn run(db: Db, rx: mpsc::Receiver<Job>) {
    let mut pending: Vec<(Done, Result<(), StoreError>)> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        let mut in_tx = false;
        let mut taken = 0;
        while let Some(job) = next.take() {
            taken += 1;
            match job {
                Job::Write { work, done } => {
                    if !in_tx {
                        if let Err(e) = db.exec("BEGIN IMMEDIATE") {
                            done(Err(refused(&db, e.into())));
                            next = if taken < MAX_GROUP {
                                rx.try_recv().ok()
                            } else {
                                None
                            };
                            continue;
                        }
                        in_tx = true;
                    }
                    let res = run_in_savepoint(&db, work);
                    let failed = res.is_err();
                    pending.push((done, res));
                    if failed && db.conn.is_autocommit() {
                        // SQLite rolled the whole transaction back (a full disk, an I/O
                        // error): nothing of this group was saved, so none of it may be
                        // acknowledged. Later jobs start a new transaction.
                        for (done, res) in pending.drain(..) {
                            done(Err(refused(
                                &db,
                                res.err().unwrap_or_else(|| {
                                    StoreError::Commit("rolled back with a failed neighbour".into())
                                }),
                            )));
                        }
                        in_tx = false;
                    }
                }
                Job::Read(f) => {
                    if in_tx {
                        commit_group(&db, &mut pending);
                        in_tx = false;
                    }
                    // A panicking read must not take the store thread down with it.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&db))).is_err() {
                        tracing::error!("a store read panicked");
                    }
                }
            }
            if taken < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if in_tx {
            commit_group(&db, &mut pending);
        }
    }
    // Every handle is gone: the last commit is done. Fold the WAL back so the file is whole.
    if let Err(e) = db.exec("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!("database checkpoint at shutdown failed: {e}");
    }
}

fn run_in_savepoint(db: &Db, work: Work) -> Result<(), StoreError> {
    db.exec("SAVEPOINT job")?;
    // A panicking job must not take the store thread (and every later write) down with it.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(db)))
        .unwrap_or(Err(StoreError::Panicked));
    match res {
        Ok(()) => {
            db.exec("RELEASE job")?;
            Ok(())
        }
        Err(e) => {
            if let Err(re) = db.exec("ROLLBACK TO job; RELEASE job") {
                tracing::error!("rollback of a failed store job failed: {re}");
            }
            Err(e)
        }
    }
}

/// A write refused: by the storage, when it says so (read-only, full), so that the guest
/// is told why.
fn refused(db: &Db, e: StoreError) -> StoreError {
    match db.storage_fault(&e) {
        Some(s) => StoreError::Storage(s),
        None => e,
    }
}

fn commit_group(db: &Db, pending: &mut Vec<(Done, Result<(), StoreError>)>) {
    let committed = db.exec("COMMIT").map_err(|e| refused(db, e.into()));
    if let Err(e) = &committed {
        tracing::error!("database commit failed: {e}; the changes in it are refused");
        let _ = db.exec("ROLLBACK");
    }
    for (done, res) in pending.drain(..) {
        match (&committed, res) {
            (Ok(()), res) => done(res),
            (Err(StoreError::Storage(s)), _) => done(Err(StoreError::Storage(*s))),
            (Err(e), _) => done(Err(StoreError::Commit(e.to_string()))),
        }
    }
}
