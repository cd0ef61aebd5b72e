//! The tokio side of [`crate::admission`]: a listener's `Gate` admits each accepted socket,
//! closes the pending connection an admission evicts (by aborting its task), and reports refusals
//! and evictions in one log line a minute at most; and the open-file budget
//! ([`open_file_limit`]) the listeners' bounds are derived from.
//!
//! ```text
//!  accept loop: let Some(pass) = gate.admit(peer) else { drop(socket); continue };
//!               let ticket = pass.ticket(); let task = spawn(serve(socket, pass));
//!               gate.track(ticket, task.abort_handle())
//!  serve:       pass.established()  (the front, after an acceptable CONNECT)
//!               drop(pass)          (the connection ended: its place is free)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::AbortHandle;

use crate::admission::{Admission, AdmissionLimits, Admit, SourceKey, SourceKeys, Ticket};
use crate::metrics::ListenerCounts;

/// Open files kept out of the listeners' budgets (the databases, the CA, logs, the broker's own).
pub const RESERVED_FILES: u64 = 256;

/// Raises the soft open-file limit to the hard one (where the system allows it) and returns the
/// soft limit in force, `None` if there is none.
pub fn open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "the open-file limit could not be raised");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// `limits` capped so that `files_per_connection` open files per connection fit in the open-file
/// limit beside [`RESERVED_FILES`] and `other` files other listeners may take.
pub fn within_open_files(
    limits: AdmissionLimits,
    files_per_connection: u64,
    other: u64,
) -> AdmissionLimits {
    match open_file_limit() {
        Some(n) => {
            let budget = n.saturating_sub(RESERVED_FILES + other) / files_per_connection.max(1);
            limits.capped(usize::try_from(budget).unwrap_or(usize::MAX))
        }
        None => limits,
    }
}

struct Inner {
    admission: Admission,
    tasks: HashMap<Ticket, AbortHandle>,
}

/// One listener's connection bounds (see the module docs).
#[derive(Clone)]
pub(crate) struct Gate {
    /// The listener's name in the log line.
    name: &'static str,
    keys: Arc<SourceKeys>,
    inner: Arc<Mutex<Inner>>,
    counts: Arc<ListenerCounts>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("name", &self.name).finish()
    }
}

/// An admitted connection's place; dropping it frees the place.
pub(crate) struct Pass {
    inner: Arc<Mutex<Inner>>,
    counts: Arc<ListenerCounts>,
    ticket: Ticket,
    /// Its source, as the gate keyed it.
    source: SourceKey,
}

impl Gate {
    /// A gate with `limits` and a fresh source key from the system's secure random source,
    /// counting what it does into `counts` (the operator's metrics).
    pub(crate) fn new(
        name: &'static str,
        limits: AdmissionLimits,
        counts: Arc<ListenerCounts>,
    ) -> std::io::Result<Gate> {
        let key = crate::random::random_bytes::<32>()
            .ok_or_else(|| std::io::Error::other("random source failed"))?;
        let keys = SourceKeys::new(*key);
        Ok(Gate {
            name,
            keys: Arc::new(keys),
            inner: Arc::new(Mutex::new(Inner {
                admission: Admission::new(limits),
                tasks: HashMap::new(),
            })),
            counts,
        })
    }

    /// Admits a socket accepted from `peer`: `None` if it is refused (close it). Closes the
    /// pending connection evicted for it, if any.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Option<Pass> {
        let source = self.keys.key(peer.ip());
        let mut inner = self.inner.lock().ok()?;
        let admitted = inner.admission.admit(source);
        if let Some(r) = inner.admission.take_report(Instant::now()) {
            tracing::warn!(
                listener = self.name,
                refused_source_full = r.source_full,
                refused_full = r.full,
                evicted_pending = r.evicted,
                "connection limits applied since the last report"
            );
        }
        match admitted {
            Admit::Refused(_) => {
                self.counts.refused.inc();
                None
            }
            Admit::Admitted { ticket, evict } => {
                if let Some(old) = evict {
                    self.counts.refused.inc();
                    if let Some(task) = inner.tasks.remove(&old) {
                        task.abort();
                    }
                }
                self.counts.accepted.inc();
                self.counts.opened();
                Some(Pass {
                    inner: self.inner.clone(),
                    counts: self.counts.clone(),
                    ticket,
                    source,
                })
            }
        }
    }

    /// Registers the task serving the connection of `ticket` ([`Pass::ticket`]), so that an
    /// eviction can close it. Call it right after the spawn, before the next [`Gate::admit`].
    pub(crate) fn track(&self, ticket: Ticket, task: AbortHandle) {
        if let Ok(mut inner) = self.inner.lock() {
            // A connection that already ended has freed its place: nothing to close later.
            if inner.admission.holds(ticket) {
                inner.tasks.insert(ticket, task);
            }
        }
    }
}

impl Pass {
    /// The connection's ticket, for [`Gate::track`].
    pub(crate) fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// The connection's source (a keyed hash of its address), for the rate limits.
    pub(crate) fn source(&self) -> SourceKey {
        self.source
    }

    /// The connection proved who it is: no longer pending. `false` if it was evicted meanwhile
    /// (close it).
    pub(crate) fn established(&self) -> bool {
        self.inner
            .lock()
            .is_ok_and(|mut i| i.admission.established(self.ticket))
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.counts.closed();
        if let Ok(mut inner) = self.inner.lock() {
            inner.admission.closed(self.ticket);
            inner.tasks.remove(&self.ticket);
        }
    }
}
