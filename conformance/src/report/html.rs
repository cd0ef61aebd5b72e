//! The report as one self-contained HTML page ([`Report::render_html`]), for reviewers.
//!
//! ```text
//!   Report + Pictures (counterexample traces, replayed traces)
//!        |
//!   render_html: verdict, sources, Req1..Req8 table, failures and notes, evidence per source,
//!                coverage lines, every broken variant's counterexample (chart | text steps),
//!                optionally a chart per replayed trace (each in a <details>)
//! ```
//!
//! Pure: a function of its arguments, no I/O. The page has inline CSS only: no script, no
//! external resource, no `id` attributes (so the inlined charts cannot clash). Every text that
//! comes from the report or a trace is escaped ([`sotto_model::chart::escape`]); the charts are
//! [`sotto_model::chart::render`]'s SVG, inlined.

use std::fmt::Write as _;

use sotto_model::chart::{escape, render as chart};
use sotto_model::counterexample::Counterexample;
use sotto_model::trace::Trace;

use super::Report;
use super::render::cell_text;
use super::verdict::{CellState, Verdict};

/// What the page shows beside the report: the pictures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pictures {
    /// Every broken variant's counterexample, in `Variant::BROKEN` order.
    pub counterexamples: Vec<Counterexample>,
    /// Why counterexamples are missing (a variant that gave none, or the search not run), one
    /// line each; shown, and marked as a failure when a variant gave none.
    pub missing: Vec<String>,
    /// Replayed traces to draw (`--chart-traces`), in replay order.
    pub traces: Vec<Trace>,
    /// Why the replayed traces are not drawn, or a note on them.
    pub traces_note: Option<String>,
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1b1f23;background:#fff}
h1{margin:0 0 8px}h2{margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}
th{background:#f6f8fa}
.verdict{display:inline-block;padding:6px 12px;border-radius:6px;font-weight:bold;font-size:18px}
.PASS{background:#dafbe1;color:#116329}.FAIL{background:#ffebe9;color:#a40e26}
.SKIPPED{background:#fff8c5;color:#7d4e00}
td.pass{color:#116329}td.fail{color:#a40e26;font-weight:bold}td.quiet{color:#6e7781}
pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px;margin:0}
ul.lines{font-family:monospace;font-size:13px;padding-left:18px}
.pair{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.pair>div{overflow:auto;max-width:100%}
section.counterexample,details.trace{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;margin:12px 0}
details.trace summary{cursor:pointer;font-family:monospace}
.note{color:#6e7781}
";

impl Report {
    /// The report and its pictures as one self-contained HTML page (see the module
    /// documentation).
    pub fn render_html(&self, pictures: &Pictures) -> String {
        let mut out = String::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        out.push_str("<title>Sotto requirements report</title><style>");
        out.push_str(CSS);
        out.push_str("</style></head><body>\n<h1>Sotto requirements report</h1>\n");
        let class = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "<p class=\"verdict {class}\">{}</p>",
            escape(&self.verdict_line())
        );

        out.push_str("<h2>Sources</h2>\n<ul class=\"lines\">");
        for line in self.source_lines() {
            let _ = write!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul>\n");

        self.requirements(&mut out);
        self.failures_and_notes(&mut out);
        self.evidence(&mut out);
        self.coverage_html(&mut out);
        counterexamples(&mut out, pictures);
        traces(&mut out, pictures);
        out.push_str("</body></html>\n");
        out
    }

    fn requirements(&self, out: &mut String) {
        out.push_str("<h2>Requirements</h2>\n<table class=\"requirements\"><thead><tr>");
        for h in [
            "req", "verdict", "model", "replay", "vectors", "wiretap", "paper",
        ] {
            let _ = write!(out, "<th>{h}</th>");
        }
        out.push_str("</tr></thead><tbody>\n");
        for r in &self.rows {
            let _ = write!(
                out,
                "<tr class=\"req\" data-req=\"{req}\"><td>{req}</td><td class=\"{v}\"><b>{v}</b></td>",
                req = escape(&r.req),
                v = r.verdict
            );
            for c in &r.cells {
                let class = match c.state {
                    CellState::Pass => "pass",
                    CellState::Fail => "fail",
                    CellState::NotRun | CellState::NoEvidence if c.required => "fail",
                    CellState::Skipped => "fail",
                    _ => "quiet",
                };
                let _ = write!(
                    out,
                    "<td class=\"{class}\" title=\"{}\">{}</td>",
                    escape(&c.summary),
                    escape(&cell_text(c))
                );
            }
            let _ = writeln!(out, "<td>{}</td></tr>", escape(&r.title));
        }
        out.push_str("</tbody></table>\n");
    }

    fn failures_and_notes(&self, out: &mut String) {
        let failures: Vec<(String, String, String)> = self
            .rows
            .iter()
            .flat_map(|r| {
                r.failures
                    .iter()
                    .map(move |f| (r.req.clone(), r.verdict.to_string(), f.clone()))
            })
            .chain(
                self.unattributed
                    .iter()
                    .map(|f| ("-".to_owned(), Verdict::Fail.to_string(), f.clone())),
            )
            .collect();
        if !failures.is_empty() {
            out.push_str("<h2>Failures</h2>\n<table class=\"failures\"><tr><th>req</th><th>verdict</th><th>why</th></tr>");
            for (req, v, f) in failures {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td class=\"{v}\">{v}</td><td>{}</td></tr>",
                    escape(&req),
                    escape(&f)
                );
            }
            out.push_str("</table>\n");
        }
        let notes = self.notes();
        if !notes.is_empty() {
            out.push_str("<h2>Notes</h2>\n<table class=\"notes\">");
            for (req, n) in notes {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td></tr>",
                    escape(req),
                    escape(n)
                );
            }
            out.push_str("</table>\n");
        }
    }

    fn evidence(&self, out: &mut String) {
        out.push_str("<h2>Evidence</h2>\n");
        for m in &self.model {
            let _ = write!(
                out,
                "<h3>model, config <code>{}</code></h3><p>{} unique states, depth {}, {:.1} s, {}</p>",
                escape(&m.config),
                m.states,
                m.max_depth,
                m.seconds,
                if m.exhaustive {
                    "exhaustive"
                } else {
                    "NOT exhaustive"
                }
            );
            out.push_str("<table class=\"properties\"><tr><th>property</th><th>kind</th><th>outcome</th></tr>");
            for p in &m.properties {
                let (class, outcome) = match (p.skipped, p.passed, p.always) {
                    (true, _, _) => ("quiet", "skipped (another configuration)"),
                    (false, true, true) => ("pass", "holds"),
                    (false, true, false) => ("pass", "found"),
                    (false, false, true) => ("fail", "COUNTEREXAMPLE"),
                    (false, false, false) => ("fail", "NOT FOUND"),
                };
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td>{}</td><td class=\"{class}\">{outcome}</td></tr>",
                    escape(&p.name),
                    if p.always { "always" } else { "sometimes" }
                );
            }
            out.push_str("</table>\n");
        }
        for e in &self.replay {
            let _ = write!(
                out,
                "<h3>replay, broker <code>{}</code></h3><p>{}/{} traces replayed with every state equal, {} steps</p>",
                escape(&e.broker),
                e.traces_passed,
                e.traces,
                e.steps
            );
            out.push_str(
                "<table class=\"actions\"><tr><th>action</th><th>steps replayed</th></tr>",
            );
            for (k, n) in &e.actions {
                let _ = write!(out, "<tr><td>{}</td><td>{n}</td></tr>", escape(k));
            }
            for (k, n) in &e.unmapped {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td class=\"quiet\">not mapped: {n} traces replayed up to it</td></tr>",
                    escape(k)
                );
            }
            out.push_str("</table>\n");
            list(out, "replay failures", &e.failures);
        }
        if let Some(v) = &self.vectors {
            out.push_str("<h3>vectors</h3><table class=\"vectors\"><tr><th>area</th><th>passed</th><th>cases</th></tr>");
            for (area, (p, t)) in &v.areas {
                let class = if p == t { "pass" } else { "fail" };
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td class=\"{class}\">{p}</td><td>{t}</td></tr>",
                    escape(area)
                );
            }
            out.push_str("</table>\n");
            list(out, "vector failures", &v.failures);
        }
        for w in &self.wiretap {
            let _ = writeln!(
                out,
                "<h3>wiretap, broker <code>{}</code></h3><table class=\"wiretap\">\
                 <tr><td>MQTT packets</td><td>{}</td></tr><tr><td>bytes</td><td>{}</td></tr>\
                 <tr><td>HTTP exchanges</td><td>{}</td></tr><tr><td>server files</td><td>{}</td></tr>\
                 <tr><td>secrets searched</td><td>{}</td></tr>\
                 <tr><td>acknowledged envelopes looked for (Req6)</td><td>{} in {}</td></tr>\
                 <tr><td>stored records, logs (BROKER-6)</td><td>{}, {}</td></tr>\
                 <tr><td>found</td><td class=\"{}\">{}</td></tr></table>",
                escape(&w.broker),
                w.frames,
                w.bytes,
                w.http_exchanges,
                w.files,
                w.needles,
                w.acknowledged_envelopes,
                escape(&w.retention_source),
                w.stored_records,
                w.logs,
                if w.findings.is_empty() {
                    "pass"
                } else {
                    "fail"
                },
                w.findings.len()
            );
            list(out, "wiretap findings", &w.findings);
        }
        for a in &self.absent {
            let what = if a.skipped { "SKIPPED" } else { "not run" };
            let _ = writeln!(
                out,
                "<p class=\"note\">{} {what}: {}</p>",
                a.source.name(),
                escape(&a.describe())
            );
        }
    }

    fn coverage_html(&self, out: &mut String) {
        if self.coverage.is_empty() {
            return;
        }
        out.push_str("<h2>Coverage</h2>\n<table class=\"coverage\"><tr><th>what</th><th>covered</th><th>gaps listed in docs/coverage.md</th><th>failures</th></tr>");
        for c in &self.coverage {
            let listed: Vec<String> = c
                .listed
                .iter()
                .map(|(g, why)| format!("{g}: {why}"))
                .collect();
            let mut fails = Vec::new();
            if !c.unlisted.is_empty() {
                fails.push(format!(
                    "not covered and not listed: {}",
                    c.unlisted.join(", ")
                ));
            }
            if !c.unknown.is_empty() {
                fails.push(format!("not in the list of all: {}", c.unknown.join(", ")));
            }
            if !c.stale.is_empty() {
                fails.push(format!("listed but not a gap: {}", c.stale.join(", ")));
            }
            let _ = write!(
                out,
                "<tr class=\"coverage-line\"><td>{}</td><td class=\"{}\">{}/{}</td><td>{}</td><td class=\"fail\">{}</td></tr>",
                escape(&c.what),
                if c.passed() { "pass" } else { "fail" },
                c.covered,
                c.total,
                escape(&listed.join("; ")),
                escape(&fails.join("; "))
            );
        }
        out.push_str("</table>\n");
    }
}

/// A titled list, when not empty.
fn list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, "<p><b>{}</b></p><ul class=\"lines\">", escape(title));
    for i in items {
        let _ = write!(out, "<li>{}</li>", escape(i));
    }
    out.push_str("</ul>\n");
}

fn counterexamples(out: &mut String, p: &Pictures) {
    out.push_str("<h2>Broken variants: counterexamples</h2>\n<p class=\"note\">Each variant removes one safeguard; the model checker finds the shortest run that breaks the property it guards. Server lane: the whole server side, which is the attacker; its steps are red. Hover a row for its description.</p>\n");
    for m in &p.missing {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(m));
    }
    for c in &p.counterexamples {
        let _ = writeln!(
            out,
            "<section class=\"counterexample\" data-variant=\"{v}\"><h3><code>{v}</code> breaks <code>{}</code></h3>\
             <p>removed: {} ({} steps, found in {:.1} s)</p><div class=\"pair\"><div>{}</div><div><pre>{}</pre></div></div></section>",
            escape(&c.property),
            escape(&c.removed),
            c.trace.steps.len(),
            c.seconds,
            chart(&c.trace),
            escape(&c.text),
            v = escape(&c.variant),
        );
    }
}

fn traces(out: &mut String, p: &Pictures) {
    if p.traces.is_empty() && p.traces_note.is_none() {
        return;
    }
    out.push_str("<h2>Replayed traces</h2>\n");
    if let Some(n) = &p.traces_note {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(n));
    }
    for t in &p.traces {
        let steps: String = t
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:>3}. {}\n", i + 1, s.says))
            .collect();
        let _ = writeln!(
            out,
            "<details class=\"trace\" open><summary>{}/{} ({} steps)</summary><div class=\"pair\"><div>{}</div><div><pre>{}</pre></div></div></details>",
            escape(&t.config),
            escape(&t.name),
            t.steps.len(),
            chart(t),
            escape(&steps)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{ModelEvidence, PropertyEvidence, ReplayEvidence};
    use crate::report::{Absent, Inputs, Source};
    use sotto_model::Variant;
    use sotto_model::counterexample::counterexample;
    use sotto_model::scenario::Config;

    fn report() -> Report {
        Report::build(Inputs {
            model: vec![ModelEvidence {
                config: "small <b>".into(),
                states: 10,
                max_depth: 3,
                exhaustive: true,
                seconds: 0.5,
                properties: vec![PropertyEvidence {
                    name: "Req8 <script>alert(1)</script>".into(),
                    always: true,
                    passed: true,
                    skipped: false,
                }],
                refusals: Default::default(),
            }],
            replay: vec![ReplayEvidence {
                broker: "embedded".into(),
                failures: vec!["x/y: step 3 & <diff>".into()],
                ..ReplayEvidence::default()
            }],
            absent: vec![Absent::skipped(Source::Wiretap)],
            ..Inputs::default()
        })
    }

    #[test]
    fn the_page_has_every_requirement_and_escapes_everything() {
        let html = report().render_html(&Pictures::default());
        for i in 1..=8 {
            assert!(html.contains(&format!("data-req=\"Req{i}\"")), "Req{i}");
        }
        assert!(!html.contains("<script"), "unescaped: {html}");
        assert!(html.contains("Req8 &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("step 3 &amp; &lt;diff&gt;"));
        assert!(html.contains("small &lt;b&gt;"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(html.contains("class=\"verdict FAIL\""));
    }

    #[test]
    fn counterexamples_and_traces_are_drawn_beside_their_steps() {
        let config = Config::named("small").expect("small");
        let c = counterexample(&config, Variant::NoReplayCache, 2).expect("it breaks");
        let trace = c.trace.clone();
        let pictures = Pictures {
            counterexamples: vec![c.clone()],
            missing: vec!["variant `x`: none <found>".into()],
            traces: vec![trace],
            traces_note: Some("1 of 1 replayed".into()),
        };
        let html = report().render_html(&pictures);
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("data-variant=\"no-replay-cache\""));
        assert!(html.contains(&escape(&c.text)));
        assert!(html.contains("none &lt;found&gt;"));
        assert!(html.contains("<details class=\"trace\""));
    }
}
