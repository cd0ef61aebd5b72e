//! What operators watch: counters and gauges of the whole service, `GET /metrics` in the
//! Prometheus text format (version 0.0.4), and `GET /health`, on a plain-HTTP listener of their
//! choosing (`sotto serve --metrics ADDR`).
//!
//! Nothing here is about a person: totals only, no user id, no address, no label that could name
//! one (the only labels are a listener's name and a kind of refusal). Counters are bumped where
//! the event happens ([`Metrics`]'s fields); gauges are read when scraped, by the probes each
//! part registers ([`Metrics::register`]): the front (its connections, its inbox ledger, whether
//! the broker behind it answers) and the membership service (whether it runs, how many accounts
//! the directory holds).
//!
//! ```text
//!  GET /metrics -> 200 text/plain; version=0.0.4   every counter and every probe's gauges
//!  GET /health  -> 200 "ok" | 503 "<part>: down"   the front's broker answers, membership runs
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

/// How long a scrape waits for the probes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A counter: only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// One more.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One listener's connections: taken, refused (or evicted) by its connection limits, open now.
#[derive(Debug, Default)]
pub struct ListenerCounts {
    /// Connections admitted.
    pub accepted: Counter,
    /// Connections refused at accept, or evicted while pending, by the limits.
    pub refused: Counter,
    open: AtomicU64,
}

impl ListenerCounts {
    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

/// What a probe reports when scraped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Gauges: (name, help, value).
    pub gauges: Vec<(&'static str, &'static str, f64)>,
    /// Whether the part is up, for `/health`.
    pub up: bool,
}

type ProbeFuture = Pin<Box<dyn Future<Output = Report> + Send>>;
type Probe = Arc<dyn Fn() -> ProbeFuture + Send + Sync>;

/// The service's metrics (see the module documentation). One per [`crate::Service`].
pub struct Metrics {
    started: Instant,
    /// The MQTT front's listener.
    pub front: Arc<ListenerCounts>,
    /// The membership service's listener.
    pub membership: Arc<ListenerCounts>,
    /// CONNECTs the front accepted and relayed (sessions begun).
    pub mqtt_sessions: Counter,
    /// PUBLISHes the front relayed to the broker.
    pub mqtt_publishes: Counter,
    /// PUBLISHes refused because the recipient's inbox was full (BROKER-5).
    pub mqtt_inbox_full: Counter,
    /// Client packets the front's filter refused (BROKER-1..3), the connection closed or not.
    pub mqtt_refused: Counter,
    /// Accounts created.
    pub signups: Counter,
    /// Signups answered 429 by the membership rate limit.
    pub rate_limited: Counter,
    /// Accounts deleted by their owner (`POST /v1/account/delete`).
    pub accounts_deleted: Counter,
    /// PUBLISHes refused because the recipient deleted their account (BROKER-5, reason 2).
    pub mqtt_no_recipient: Counter,
    probes: Mutex<BTreeMap<&'static str, Probe>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All zero, no probe.
    pub fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            front: Arc::default(),
            membership: Arc::default(),
            mqtt_sessions: Counter::default(),
            mqtt_publishes: Counter::default(),
            mqtt_inbox_full: Counter::default(),
            mqtt_refused: Counter::default(),
            signups: Counter::default(),
            rate_limited: Counter::default(),
            accounts_deleted: Counter::default(),
            mqtt_no_recipient: Counter::default(),
            probes: Mutex::new(BTreeMap::new()),
        }
    }

    /// Registers (or replaces) the probe of the part called `part` (`front`, `membership`).
    pub fn register<F, Fut>(&self, part: &'static str, probe: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Report> + Send + 'static,
    {
        let probe: Probe = Arc::new(move || Box::pin(probe()));
        if let Ok(mut probes) = self.probes.lock() {
            probes.insert(part, probe);
        }
    }

    /// Every probe's report, by part (a probe that does not answer in time is down).
    pub async fn probe(&self) -> BTreeMap<&'static str, Report> {
        let probes: Vec<(&'static str, Probe)> = match self.probes.lock() {
            Ok(p) => p.iter().map(|(k, v)| (*k, v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        let mut out = BTreeMap::new();
        for (part, probe) in probes {
            let report = tokio::time::timeout(PROBE_TIMEOUT, probe())
                .await
                .unwrap_or_default();
            out.insert(part, report);
        }
        out
    }

    /// The Prometheus text of every counter and every probe's gauges.
    pub async fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        let listeners = [("front", &self.front), ("membership", &self.membership)];
        for (name, help, read) in [
            (
                "sotto_connections_accepted_total",
                "Connections admitted by the listener's connection limits.",
                (|l: &ListenerCounts| l.accepted.get() as f64) as fn(&ListenerCounts) -> f64,
            ),
            (
                "sotto_connections_refused_total",
                "Connections refused at accept or evicted while pending by the connection limits.",
                |l: &ListenerCounts| l.refused.get() as f64,
            ),
            (
                "sotto_connections_open",
                "Connections open now.",
                |l: &ListenerCounts| l.open() as f64,
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (listener, counts) in listeners {
                let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {}", read(counts));
            }
        }
        for (name, help, value) in [
            (
                "sotto_mqtt_sessions_total",
                "MQTT CONNECTs accepted and relayed to the broker.",
                &self.mqtt_sessions,
            ),
            (
                "sotto_mqtt_publishes_total",
                "PUBLISHes relayed to the broker.",
                &self.mqtt_publishes,
            ),
            (
                "sotto_mqtt_inbox_full_total",
                "PUBLISHes refused because the recipient's inbox was full (BROKER-5).",
                &self.mqtt_inbox_full,
            ),
            (
                "sotto_mqtt_no_recipient_total",
                "PUBLISHes refused because the recipient deleted their account (BROKER-5, reason 2).",
                &self.mqtt_no_recipient,
            ),
            (
                "sotto_mqtt_refused_packets_total",
                "Client packets refused by the front's rules (BROKER-1..3).",
                &self.mqtt_refused,
            ),
            ("sotto_signups_total", "Accounts created.", &self.signups),
            (
                "sotto_accounts_deleted_total",
                "Accounts deleted by their owner.",
                &self.accounts_deleted,
            ),
            (
                "sotto_rate_limited_total",
                "Signups refused by the rate limit (429).",
                &self.rate_limited,
            ),
        ] {
            counter(&mut out, name, help, value.get());
        }
        let reports = self.probe().await;
        let _ = writeln!(
            out,
            "# HELP sotto_up Whether the part answers.\n# TYPE sotto_up gauge"
        );
        for (part, report) in &reports {
            let _ = writeln!(out, "sotto_up{{part=\"{part}\"}} {}", u8::from(report.up));
        }
        for report in reports.values() {
            for (name, help, value) in &report.gauges {
                gauge(&mut out, name, help, *value);
            }
        }
        gauge(
            &mut out,
            "sotto_uptime_seconds",
            "Seconds since the service started.",
            self.started.elapsed().as_secs_f64().floor(),
        );
        out
    }

    /// `/health`: every part up, or the first one down.
    pub async fn health(&self) -> Result<(), &'static str> {
        let reports = self.probe().await;
        for part in ["front", "membership"] {
            if !reports.get(part).is_some_and(|r| r.up) {
                return Err(part);
            }
        }
        Ok(())
    }
}

/// A running metrics listener; dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Serves `/metrics` and `/health` of `metrics` on `listen` (plain HTTP).
    pub async fn start(
        listen: std::net::SocketAddr,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let app = Router::new()
            .route("/metrics", get(metrics_page))
            .route("/health", get(health_page))
            .with_state(metrics);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "metrics listener stopped");
            }
        });
        tracing::info!(addr = %local_addr, "metrics listening");
        Ok(MetricsServer { local_addr, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render().await,
    )
}

async fn health_page(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.health().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(part) => (StatusCode::SERVICE_UNAVAILABLE, format!("{part}: down\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_and_probes_render_as_prometheus_text_and_health_follows_the_probes() {
        let m = Metrics::new();
        m.signups.inc();
        m.front.accepted.inc();
        m.front.opened();
        assert_eq!(m.health().await, Err("front"));
        m.register("front", || async {
            Report {
                gauges: vec![("sotto_queued_envelopes", "Queued.", 3.0)],
                up: true,
            }
        });
        m.register("membership", || async {
            Report {
                gauges: Vec::new(),
                up: false,
            }
        });
        assert_eq!(m.health().await, Err("membership"));
        let text = m.render().await;
        for line in [
            "sotto_signups_total 1",
            "sotto_connections_accepted_total{listener=\"front\"} 1",
            "sotto_connections_open{listener=\"front\"} 1",
            "sotto_connections_open{listener=\"membership\"} 0",
            "sotto_queued_envelopes 3",
            "sotto_up{part=\"front\"} 1",
            "sotto_up{part=\"membership\"} 0",
            "# TYPE sotto_mqtt_publishes_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        m.register("membership", || async {
            Report {
                gauges: Vec::new(),
                up: true,
            }
        });
        assert_eq!(m.health().await, Ok(()));
    }
}
