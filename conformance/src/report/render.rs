//! Rendering the report: the fixed-width text table ([`Report::render_table`]) and JSON
//! ([`Report::to_json`]); the HTML page is in `html.rs` ([`Report::render_html`]).

use super::Report;
use super::requirements::Source;
use super::verdict::{Cell, CellState, ReqRow, Verdict};

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Plain data always serializes; this only keeps the output JSON if it ever does not.
            serde_json::json!({ "error": e.to_string() }).to_string()
        })
    }

    /// A fixed-width table (one line per requirement), then one line per failure with its
    /// reason, notes, and a verdict line.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        out.push_str("Sotto requirements report\n\n");
        for line in self.source_lines() {
            out.push_str(&format!("  {line}\n"));
        }
        out.push('\n');
        let header = [
            "req", "verdict", "model", "replay", "vectors", "wiretap", "paper",
        ];
        let widths = [5, 8, 27, 22, 19, 19];
        let mut line = String::new();
        for (h, w) in header.iter().zip(widths.iter()) {
            line.push_str(&format!("{h:<w$} "));
        }
        line.push_str(header[6]);
        out.push_str(line.trim_end());
        out.push('\n');
        let mut rule = String::new();
        for w in widths {
            rule.push_str(&"-".repeat(w - 1));
            rule.push_str("  ");
        }
        rule.push_str(&"-".repeat(20));
        out.push_str(&rule);
        out.push('\n');
        for r in &self.rows {
            let mut line = format!("{:<5} {:<8} ", r.req, r.verdict.to_string());
            for (c, w) in r.cells.iter().zip(widths[2..].iter()) {
                line.push_str(&format!("{:<w$} ", cell_text(c)));
            }
            line.push_str(&r.title);
            out.push_str(&line);
            out.push('\n');
        }
        let failing: Vec<&ReqRow> = self
            .rows
            .iter()
            .filter(|r| !r.failures.is_empty())
            .collect();
        if !failing.is_empty() || !self.unattributed.is_empty() {
            out.push_str("\nfailures:\n");
            for r in failing {
                for f in &r.failures {
                    out.push_str(&format!(
                        "  {:<5} {:<8} {f}\n",
                        r.req,
                        r.verdict.to_string()
                    ));
                }
            }
            for f in &self.unattributed {
                out.push_str(&format!("  {:<5} {:<8} {f}\n", "-", "FAIL"));
            }
        }
        let notes = self.notes();
        if !notes.is_empty() {
            out.push_str("\nnotes:\n");
            for (req, n) in notes {
                out.push_str(&format!("  {req:<5} {n}\n"));
            }
        }
        out.push('\n');
        out.push_str(&self.verdict_line());
        out.push('\n');
        out
    }

    /// Every row's notes, with the row's requirement.
    pub(super) fn notes(&self) -> Vec<(&str, &String)> {
        self.rows
            .iter()
            .flat_map(|r| r.notes.iter().map(move |n| (r.req.as_str(), n)))
            .collect()
    }

    /// One line per source run (or absence).
    pub(super) fn source_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for m in &self.model {
            let passed = m.properties.iter().filter(|p| p.passed).count();
            let checked = m.properties.iter().filter(|p| !p.skipped).count();
            lines.push(format!(
                "model    config `{}`: {} unique states, depth {}, {:.1} s{}, {passed}/{checked} properties",
                m.config,
                m.states,
                m.max_depth,
                m.seconds,
                if m.exhaustive { ", exhaustive" } else { ", NOT exhaustive" },
            ));
        }
        for e in &self.replay {
            lines.push(format!(
                "replay   {}: {}/{} traces, {} steps",
                e.broker, e.traces_passed, e.traces, e.steps
            ));
        }
        if let Some(v) = &self.vectors {
            let passed: usize = v.areas.values().map(|(p, _)| p).sum();
            let total: usize = v.areas.values().map(|(_, t)| t).sum();
            lines.push(format!(
                "vectors  {} areas: {passed}/{total} cases",
                v.areas.len()
            ));
        }
        for w in &self.wiretap {
            lines.push(format!(
                "wiretap  {}: {} frames ({} bytes), {} HTTP exchanges, {} files, {} secrets searched, {} found",
                w.broker,
                w.frames,
                w.bytes,
                w.http_exchanges,
                w.files,
                w.needles,
                w.findings.len()
            ));
            lines.push(format!(
                "wiretap  {}: Req6 at the broker: {} acknowledged envelopes looked for in {}; \
                 BROKER-6: {} stored envelope records and {} logs searched for links",
                w.broker, w.acknowledged_envelopes, w.retention_source, w.stored_records, w.logs
            ));
        }
        for c in &self.coverage {
            lines.push(c.render());
        }
        for a in &self.absent {
            let what = if a.skipped { "SKIPPED" } else { "not run" };
            lines.push(format!("{:<8} {what}: {}", a.source.name(), a.describe()));
        }
        for s in Source::ALL {
            if !self.has_run(s) && !self.absent.iter().any(|a| a.source == s) {
                lines.push(format!("{:<8} not run: no evidence given", s.name()));
            }
        }
        lines
    }

    fn has_run(&self, s: Source) -> bool {
        match s {
            Source::Model => !self.model.is_empty(),
            Source::Replay => !self.replay.is_empty(),
            Source::Vectors => self.vectors.is_some(),
            Source::Wiretap => !self.wiretap.is_empty(),
        }
    }

    pub(super) fn verdict_line(&self) -> String {
        let ids = |v: Verdict| -> Vec<&str> {
            self.rows
                .iter()
                .filter(|r| r.verdict == v)
                .map(|r| r.req.as_str())
                .collect()
        };
        if self.passed() {
            return format!("PASS: all {} requirements pass", self.rows.len());
        }
        let mut parts = Vec::new();
        let failed = ids(Verdict::Fail);
        if !failed.is_empty() {
            parts.push(format!("{} fail ({})", failed.len(), failed.join(", ")));
        }
        let skipped = ids(Verdict::Skipped);
        if !skipped.is_empty() {
            parts.push(format!(
                "{} skipped, not passed ({})",
                skipped.len(),
                skipped.join(", ")
            ));
        }
        if !self.unattributed.is_empty() {
            parts.push(format!(
                "{} failures belong to no requirement",
                self.unattributed.len()
            ));
        }
        format!("FAIL: {}", parts.join("; "))
    }
}

/// A cell as the table shows it.
pub(super) fn cell_text(c: &Cell) -> String {
    match c.state {
        CellState::Pass | CellState::Fail => c.summary.clone(),
        CellState::NotRun if c.required => "NOT RUN".into(),
        CellState::NotRun => "(not run)".into(),
        CellState::NoEvidence if c.required => "NO EVIDENCE".into(),
        CellState::NoEvidence => "(none)".into(),
        CellState::Skipped => "SKIPPED".into(),
        CellState::NotApplicable => "-".into(),
    }
}
