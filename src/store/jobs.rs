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

    /// Queues a write; `done` gets its outcome once the transaction holding it is durable.
    pub fn write(
        &self,
        work: impl FnOnce(&Db) -> Result<(), StoreError> + Send + 'static,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) {
        let job = Job::Write {
            work: Box::new(work),
            done: Box::new(done),
        };
        if let Err(mpsc::SendError(Job::Write { done, .. })) = self.tx.send(job) {
            done(Err(StoreError::Closed));
        }
    }

    /// Queues a read that sees every write submitted before it.
    pub fn read(&self, f: impl FnOnce(&Db) + Send + 'static) -> Result<(), StoreError> {
        self.tx
            .send(Job::Read(Box::new(f)))
            .map_err(|_| StoreError::Closed)
    }

    /// Runs `f` as a read (after every write submitted before it) and returns its value.
    /// Reads do not join the group transaction, so they never delay a commit.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.read(move |db| {
            let _ = tx.send(f(db));
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` as a write and waits for its commit.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slot = self.submit(f, move |res| {
            let _ = tx.send(res);
        });
        rx.await.map_err(|_| StoreError::Closed)??;
        take(&slot)
    }

    /// The same as [`Store::call`] for threads outside the runtime (the library scanner).
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let slot = self.submit(f, move |res| {
            let _ = tx.send(res);
        });
        rx.recv().map_err(|_| StoreError::Closed)??;
        take(&slot)
    }

    /// Queues `f` as a write whose value lands in the returned slot; `done` runs after commit.
    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Slot<R> {
        let slot: Slot<R> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.write(
            move |db| {
                let r = f(db)?;
                *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                Ok(())
            },
            done,
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
                            done(Err(e.into()));
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
                            done(Err(res.err().unwrap_or_else(|| {
                                StoreError::Commit("rolled back with a failed neighbour".into())
                            })));
                        }
                        in_tx = false;
                    }
                }
                Job::Read(f) => {
                    if in_tx {
                        commit(&db, &mut pending);
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
            commit(&db, &mut pending);
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

fn commit(db: &Db, pending: &mut Vec<(Done, Result<(), StoreError>)>) {
    let committed = db.exec("COMMIT");
    if let Err(e) = &committed {
        tracing::error!("database commit failed: {e}; the changes in it are refused");
        let _ = db.exec("ROLLBACK");
    }
    for (done, res) in pending.drain(..) {
        match (&committed, res) {
            (Ok(()), res) => done(res),
            (Err(e), _) => done(Err(StoreError::Commit(e.to_string()))),
        }
    }
}
