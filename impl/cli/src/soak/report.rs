//! The figures of a run ([`Report`]) and how they are shown: the text report, one per broker,
//! and the whole soak as one JSON object (`--json`).

use std::io::Write;
use std::time::Duration;

use super::audit::Audit;
use super::plan::Plan;
use super::server::Memory;
use super::tally::Tally;
use crate::cli::Broker;

/// The figures of one run.
#[derive(Debug)]
pub(super) struct Report {
    broker: Broker,
    setup: Duration,
    wall: Duration,
    delivered: usize,
    receipts: usize,
    latency_p50: Duration,
    latency_p99: Duration,
    latency_max: Duration,
    memory: Memory,
    reconnects: usize,
    lost_connections: usize,
    refused: usize,
    duplicate_events: usize,
    missing: usize,
    duplicates: usize,
    undelivered: usize,
    pub(super) problems: Vec<String>,
}

/// What the run through `broker` measured (`setup`, `memory`, `reconnects`), what its online loops
/// reported (`tally`) and what its stores hold (`audit`, judged).
pub(super) struct Run {
    pub(super) broker: Broker,
    pub(super) setup: Duration,
    pub(super) memory: Memory,
    pub(super) reconnects: usize,
    pub(super) tally: Tally,
    pub(super) audit: Audit,
}

impl Report {
    /// The figures of `run` of `plan`.
    pub(super) fn new(plan: &Plan, run: Run) -> Report {
        let Run {
            broker,
            setup,
            memory,
            reconnects,
            tally,
            audit,
        } = run;
        let missing = audit.missing();
        let mut lat = tally.latencies_us;
        lat.sort_unstable();
        let wall = match (tally.first_send, tally.last_receive) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        Report {
            broker,
            setup,
            wall,
            delivered: plan.total() - missing,
            receipts: audit.receipts(),
            latency_p50: percentile(&lat, 0.50),
            latency_p99: percentile(&lat, 0.99),
            latency_max: lat
                .last()
                .map(|&us| Duration::from_micros(us))
                .unwrap_or_default(),
            memory,
            reconnects,
            lost_connections: tally.lost_connections,
            refused: tally.refused,
            duplicate_events: tally.duplicate_events,
            missing,
            duplicates: audit.duplicates(),
            undelivered: audit.undelivered,
            problems: audit.problems,
        }
    }

    fn throughput(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 {
            self.delivered as f64 / s
        } else {
            0.0
        }
    }

    pub(super) fn print(&self, plan: &Plan, out: &mut dyn Write) -> anyhow::Result<()> {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            out,
            "soak through the {} broker: {} clients x {} messages, {} peers each, window {}, \
             disconnect p={} (offline up to {:?}), seed {}",
            self.broker.name(),
            plan.n,
            plan.m,
            plan.offsets.len(),
            plan.window,
            plan.disconnect,
            plan.offline,
            plan.seed
        )?;
        writeln!(
            out,
            "  setup:       {:.1} s (signups, cards, clients online)",
            self.setup.as_secs_f64()
        )?;
        writeln!(
            out,
            "  delivered:   {} of {} messages, {} missing, {} duplicated; {} receipts",
            self.delivered,
            plan.total(),
            self.missing,
            self.duplicates,
            self.receipts
        )?;
        writeln!(
            out,
            "  wall time:   {:.2} s (first send to last message received)",
            self.wall.as_secs_f64()
        )?;
        writeln!(out, "  throughput:  {:.1} messages/s", self.throughput())?;
        writeln!(
            out,
            "  latency:     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.latency_p50),
            ms(self.latency_p99),
            ms(self.latency_max)
        )?;
        match self.memory.mosquitto_kib {
            Some(m) => writeln!(
                out,
                "  server peak memory: {:.1} MiB (sotto serve {:.1} MiB + mosquitto {:.1} MiB, VmHWM)",
                mib(self.memory.total_kib()),
                mib(self.memory.serve_kib),
                mib(m)
            )?,
            None => writeln!(
                out,
                "  server peak memory: {:.1} MiB (sotto serve, VmHWM)",
                mib(self.memory.serve_kib)
            )?,
        }
        writeln!(
            out,
            "  reconnects:  {} random disconnects; {} connections lost otherwise; {} envelopes \
             refused",
            self.reconnects, self.lost_connections, self.refused
        )?;
        for p in &self.problems {
            writeln!(out, "  PROBLEM: {p}")?;
        }
        Ok(())
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Duration::from_micros(sorted.get(rank - 1).copied().unwrap_or(0))
}

/// The whole soak as one JSON object (`--json`): the plan, one object per broker, the failures.
pub(super) fn json(plan: &Plan, reports: &[Report], failures: &[String]) -> String {
    // Seconds and milliseconds to the microsecond, as the text report prints them.
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let ms = |d: Duration| round(d.as_secs_f64() * 1000.0);
    let runs: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "broker": r.broker.name(),
                "setup_s": round(r.setup.as_secs_f64()),
                "wall_s": round(r.wall.as_secs_f64()),
                "delivered": r.delivered,
                "receipts": r.receipts,
                "missing": r.missing,
                "duplicates": r.duplicates,
                "undelivered": r.undelivered,
                "throughput_per_s": (r.throughput() * 10.0).round() / 10.0,
                "latency_ms": {
                    "p50": ms(r.latency_p50),
                    "p99": ms(r.latency_p99),
                    "max": ms(r.latency_max),
                },
                "server_peak_kib": {
                    "serve": r.memory.serve_kib,
                    "mosquitto": r.memory.mosquitto_kib,
                    "total": r.memory.total_kib(),
                },
                "reconnects": r.reconnects,
                "lost_connections": r.lost_connections,
                "refused": r.refused,
                "duplicate_events": r.duplicate_events,
                "problems": r.problems,
            })
        })
        .collect();
    serde_json::json!({
        "clients": plan.n,
        "messages": plan.m,
        "peers": plan.offsets.len(),
        "window": plan.window,
        "disconnect": plan.disconnect,
        "offline_ms": plan.offline.as_millis(),
        "seed": plan.seed,
        "pass": failures.is_empty(),
        "runs": runs,
        "failures": failures,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
