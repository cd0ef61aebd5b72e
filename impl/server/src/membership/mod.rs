//! The membership service: signup without personal data (Req1, SIGNUP-1..4), client certificates
//! from the service CA (TLS-1), the prekey directory (KEY-3..5) and the server's clock (TIME-1), over
//! HTTPS.
//!
//! ```text
//!  device --TLS 1.3 (client cert optional)--> accept loop ----------------------------+
//!                                              | CN of the verified client cert        |
//!                                              v  = PeerIdentity (request extension)  |
//!                                           axum router (handlers.rs)                 |
//!            signup / renew / prekeys /        |  validate with sotto-core first      |
//!            bundle / time / challenge /       v                                      |
//!            account delete                                                            |
//!                                        Store (membership.db)   Pki (ca.rs)          |
//!                                                                                      |
//!  every response <-- x-sotto-server-time, cache-control: no-store, JSON errors <------+
//! ```
//!
//! The service keeps only public keys and certificate bookkeeping ([`store`]); it never records or
//! logs a peer's address. Bodies are bounded (`sotto_wire::membership_api::MAX_BODY`), connections
//! are bounded per source and in all ([`MembershipConfig::admission`], [`crate::admission`]: the
//! oldest connection makes room for a new one), every TLS handshake, request header and request
//! has a deadline, and the challenge map is bounded ([`challenge::MAX_CHALLENGES`]). A restart
//! with the same data directory
//! keeps every user (and [`crate::ca::Pki`] keeps the CA).
//!
//! The wire format of the API is `sotto_wire::membership_api` and docs/operations.md; the typed
//! client devices use is `sotto_client::membership::MembershipClient`.
//!
//! For the conformance wiretap (Req8), [`MembershipHandle::wiretap`] yields every request and
//! response in plaintext ([`tap`]); with no tap attached nothing is buffered.

pub mod challenge;
pub mod directory;
pub mod error;
mod handlers;
pub mod postgres;
pub mod quota;
pub mod store;
pub mod tap;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sotto_core::UserId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::admission::AdmissionLimits;
use crate::ca::{self, Pki};
use crate::departure::Departures;
use crate::gate::Gate;
use crate::key_proof::ClientKeyVerifier;
use crate::revocation::Revocations;
pub use directory::{Directory, DirectoryBackend};
pub use error::{ApiError, MembershipError, StoreError};
use handlers::{AppState, PeerIdentity, Proven, Source};
pub use tap::HttpTapRecord;
use tap::TapSlot;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reading a request's header may take (also closes idle keep-alive connections).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The proof-of-work difficulty `sotto serve` uses by default (SIGNUP-3).
pub const DEFAULT_DIFFICULTY: u8 = 8;

/// How to run the membership service.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// The service's data directory (private; `membership.db` lives there on the SQLite
    /// backend).
    pub data_dir: PathBuf,
    /// Which database holds the directory ([`DirectoryBackend::Sqlite`] by default).
    pub directory: DirectoryBackend,
    /// Address to listen on; port 0 picks a free port ([`MembershipHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Proof-of-work difficulty in bits, 0..=32 (SIGNUP-3); 0 turns the work and the challenge check
    /// off.
    pub difficulty: u8,
    /// The message service's address, `host:port`, told to devices at signup.
    pub broker_addr: String,
    /// How many connections it takes, per source and in all
    /// ([`AdmissionLimits::MEMBERSHIP`] unless a test or an operator says otherwise).
    pub admission: AdmissionLimits,
    /// Its rate limits ([`quota::QuotaLimits::DEFAULT`] unless a test or an operator says
    /// otherwise).
    pub quotas: quota::QuotaLimits,
    /// The revoked certificates, shared with the MQTT front ([`crate::revocation`]): loaded
    /// from the database at start, added to at each renewal and account deletion.
    pub revocations: Revocations,
    /// The departed accounts, shared with the MQTT front ([`crate::departure`]): loaded from the
    /// database at start, added to at each account deletion and expiry.
    pub departures: Departures,
    /// The operator's metrics it counts into and registers its probe with.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The membership service.
#[derive(Debug)]
pub struct Membership;

impl Membership {
    /// Opens the store, binds the listener and starts serving HTTPS with `pki`'s server
    /// certificate. Returns once the service accepts connections.
    pub async fn start(
        config: MembershipConfig,
        pki: Arc<Pki>,
    ) -> Result<MembershipHandle, MembershipError> {
        if config.difficulty > sotto_core::limits::MAX_POW_DIFFICULTY {
            return Err(MembershipError::Config("difficulty above 32"));
        }
        crate::private::private_dir(&config.data_dir)?;
        let directory = Directory::open(&config.directory, &config.data_dir).await?;
        config
            .revocations
            .replace(directory.revoked_serials(pki.clock().now_ms()).await?);
        config.departures.extend(
            directory
                .departed_users()
                .await?
                .iter()
                .map(UserId::to_text),
        );
        let pki_clock = pki.clock().clone();
        // Several instances on PostgreSQL: each applies what the others revoke and depart.
        let follower = match &directory {
            Directory::Postgres(pg) => Some(tokio::spawn(pg.clone().follow(
                config.revocations.clone(),
                config.departures.clone(),
                pki.clock().clone(),
            ))),
            Directory::Sqlite(_) => None,
        };
        let sweeper = tokio::spawn(expire_accounts(
            directory.clone(),
            pki.clock().clone(),
            config.departures.clone(),
        ));
        let (tls, keys) = pki.https_server_config()?;
        let tls = TlsAcceptor::from(tls);
        let gate = Gate::new(
            "membership",
            config.admission,
            config.metrics.membership.clone(),
        )?;
        let key = crate::random::random_bytes::<32>()
            .ok_or(MembershipError::Config("random source failed"))?;
        let quotas = quota::Quotas::new(config.quotas, *key);
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            directory,
            pki,
            challenges: challenge::Challenges::new(),
            quotas: std::sync::Mutex::new(quotas),
            revocations: config.revocations.clone(),
            departures: config.departures.clone(),
            difficulty: config.difficulty,
            broker: config.broker_addr,
            metrics: config.metrics.clone(),
        });
        register_probe(&config.metrics, Arc::downgrade(&state));
        let (stop, stopped) = oneshot::channel();
        let tap = Arc::new(TapSlot::default());
        let task = tokio::spawn(accept_loop(
            listener,
            tls,
            gate,
            PeerChecks {
                keys,
                revocations: config.revocations.clone(),
                clock: pki_clock.clone(),
            },
            router(state),
            tap.clone(),
            stopped,
        ));
        tracing::info!(addr = %local_addr, "membership service listening");
        Ok(MembershipHandle {
            local_addr,
            stop: Some(stop),
            task: Some(task),
            sweeper,
            follower,
            tap,
        })
    }
}

/// A running membership service. Dropping it stops the service as [`MembershipHandle::shutdown`]
/// does, without waiting.
#[derive(Debug)]
pub struct MembershipHandle {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// [`expire_accounts`], stopped with the service.
    sweeper: tokio::task::JoinHandle<()>,
    /// [`postgres::PgDirectory::follow`], on PostgreSQL only; stopped with the service.
    follower: Option<tokio::task::JoinHandle<()>>,
    tap: Arc<TapSlot>,
}

impl MembershipHandle {
    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL for a client: `https://localhost:<port>` (the server certificate names
    /// localhost, 127.0.0.1 and ::1).
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.local_addr.port())
    }

    /// Starts a wiretap (replacing any previous one): every HTTP request (method, path and query,
    /// body) and response (status, body) the service handles from now on, in plaintext (after
    /// TLS), paired by exchange number. For tests and the conformance wiretap (Req8) only; without
    /// a tap (or once its receiver is dropped) nothing is buffered.
    pub fn wiretap(&self) -> tokio::sync::mpsc::UnboundedReceiver<HttpTapRecord> {
        self.tap.attach()
    }

    /// Stops accepting, closes every open connection and waits for that. The database is closed
    /// when the last store operation still running on a blocking thread ends (each commits or rolls
    /// back as a whole; a new instance on the same directory may start at once).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the service stops (it only stops through [`MembershipHandle::shutdown`] or a
    /// drop, so this is for a `serve` command that runs until killed).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MembershipHandle {
    fn drop(&mut self) {
        self.sweeper.abort();
        if let Some(follower) = &self.follower {
            follower.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The membership service's part of the operator's metrics: up while it serves (its state is
/// alive); the accounts the directory holds.
fn register_probe(metrics: &crate::metrics::Metrics, state: std::sync::Weak<AppState>) {
    metrics.register("membership", move || {
        let state = state.upgrade();
        async move {
            let Some(state) = state else {
                return crate::metrics::Report::default();
            };
            let accounts = state.directory.count_users().await.ok();
            crate::metrics::Report {
                gauges: vec![(
                    "sotto_accounts",
                    "Accounts in the directory.",
                    accounts.unwrap_or(0) as f64,
                )],
                up: accounts.is_some(),
            }
        }
    });
}

/// How often [`expire_accounts`] looks for expired accounts.
const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// At start and then daily: deletes the accounts whose certificate expired more than
/// [`directory::ACCOUNT_GRACE_DAYS`] ago without a renewal ([`Directory::expire_accounts`]),
/// logging only how many; they depart as deleted accounts do ([`Departures::depart`]: messages to
/// them are refused, their inboxes dropped).
async fn expire_accounts(directory: Directory, clock: crate::clock::Clock, departures: Departures) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    loop {
        tick.tick().await;
        match directory.expire_accounts(clock.now_ms()).await {
            Ok(gone) if gone.is_empty() => {}
            Ok(gone) => {
                tracing::info!(accounts = gone.len(), "expired accounts deleted");
                // Each departs as a deleted account does: refused as a recipient, its
                // connections closed, its inbox dropped from the broker.
                for user in &gone {
                    departures.depart(&user.to_text()).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "deleting expired accounts"),
        }
    }
}

/// Every route the service serves: its method and path template (`{user_id}` as axum and OpenAPI
/// write it), read from the one table the router is built from. docs/membership-api.openapi.json
/// describes exactly these (`impl/server/tests/openapi.rs` checks it).
pub fn routes() -> Vec<(axum::http::Method, &'static str)> {
    ROUTES
        .iter()
        .map(|(verb, path, _)| (verb.method(), *path))
        .collect()
}

/// The methods the API uses.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Get,
    Post,
}

impl Verb {
    fn method(self) -> axum::http::Method {
        match self {
            Verb::Get => axum::http::Method::GET,
            Verb::Post => axum::http::Method::POST,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
        }
    }
}

/// A route's handler, for the method filter it is given.
type Handler = fn(MethodFilter) -> MethodRouter<Arc<AppState>>;

/// The one table of routes: [`router`] serves it, [`routes`] lists it.
const ROUTES: [(Verb, &str, Handler); 8] = {
    use sotto_wire::membership_api::paths;
    [
        (Verb::Get, paths::TIME, |f| on(f, handlers::time)),
        (Verb::Get, paths::CHALLENGE, |f| on(f, handlers::challenge)),
        (Verb::Post, paths::SIGNUP, |f| on(f, handlers::signup)),
        (Verb::Post, paths::RENEW, |f| on(f, handlers::renew)),
        (Verb::Post, paths::PREKEYS, |f| {
            on(f, handlers::upload_prekeys)
        }),
        (Verb::Get, paths::PREKEY_COUNT, |f| {
            on(f, handlers::prekey_count)
        }),
        (Verb::Get, paths::BUNDLE, |f| on(f, handlers::bundle)),
        (Verb::Post, paths::ACCOUNT_DELETE, |f| {
            on(f, handlers::delete_account)
        }),
    ]
};

fn router(state: Arc<AppState>) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |router, (verb, path, handler)| {
            router.route(path, handler(verb.filter()))
        })
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
}

async fn accept_loop(
    listener: TcpListener,
    tls: TlsAcceptor,
    gate: Gate,
    checks: PeerChecks,
    router: Router,
    tap: Arc<TapSlot>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                // The peer's address is neither stored nor logged: the gate keeps a keyed hash of
                // it while the connection lasts (crate::admission).
                let Ok((tcp, peer)) = accepted else {
                    // Out of file descriptors and the like: back off a little.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(pass) = gate.admit(peer) else {
                    drop(tcp);
                    continue;
                };
                let ticket = pass.ticket();
                let source = Source(pass.source());
                let (tls, router, tap) = (tls.clone(), router.clone(), tap.clone());
                let checks = checks.clone();
                let task = connections.spawn(async move {
                    serve_connection(tcp, source, checks, tls, router, tap).await;
                    drop(pass);
                });
                gate.track(ticket, task);
            }
        }
    }
    connections.shutdown().await;
    tracing::info!("membership service stopped");
}

/// What the accept loop checks of a client certificate: whether the CA issued it
/// ([`ClientKeyVerifier`]) and whether a renewal revoked it.
#[derive(Clone)]
struct PeerChecks {
    keys: Arc<ClientKeyVerifier>,
    revocations: Revocations,
    /// The service's clock, for the TIME-1 header of every response.
    clock: crate::clock::Clock,
}

async fn serve_connection(
    tcp: TcpStream,
    source: Source,
    checks: PeerChecks,
    tls: TlsAcceptor,
    router: Router,
    tap: Arc<TapSlot>,
) {
    let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await else {
        return;
    };
    // The TLS layer checked that the client holds the certificate's key (key_proof). Only a
    // certificate of the CA, not revoked by a renewal, is an identity: its CN is the user id (the
    // certificate endpoints answer 401 otherwise). Any certificate proves its key (signup, renew).
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .cloned();
    let peer = PeerIdentity(
        cert.as_ref()
            .filter(|c| checks.keys.is_certified(c) && !checks.revocations.is_revoked_cert(c))
            .and_then(ca::common_name)
            .and_then(|cn| UserId::parse(&cn).ok()),
    );
    let proven = cert.as_ref().and_then(ClientKeyVerifier::proven_key);
    let service = TowerToHyperService::new(router);
    let clock = checks.clock;
    let per_request = hyper::service::service_fn(move |req: Request<Incoming>| {
        let service = service.clone();
        let tap = tap.active();
        let clock = clock.clone();
        let proven = Proven(proven.clone());
        async move {
            let handled = async {
                let mut req = req.map(Body::new);
                if let Some(tap) = &tap {
                    req = tap.request(req).await;
                }
                req.extensions_mut().insert(peer);
                req.extensions_mut().insert(source);
                req.extensions_mut().insert(proven);
                hyper::service::Service::call(&service, req).await
            };
            let mut response: Response =
                match tokio::time::timeout(handlers::REQUEST_TIMEOUT, handled).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => ApiError::timeout().into_response(),
                };
            stamp(&mut response, &clock);
            if let Some(tap) = &tap {
                response = tap.response(response).await;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), per_request)
        .await;
}

/// TIME-1 on every response, and no caching of anything (bundles are single-use).
fn stamp(response: &mut Response, clock: &crate::clock::Clock) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&clock.now_ms().to_string()) {
        headers.insert(sotto_wire::membership_api::TIME_HEADER, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
