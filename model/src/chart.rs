//! Message sequence charts: a [`Trace`] drawn as one self-contained SVG, for reviewers.
//!
//! This module owns the picture of a run and nothing else: it is pure (no I/O, no model
//! exploration), reads only the trace, and returns a string.
//!
//! ```text
//!   step   server (the attacker)     A            B            C
//!     1        |<--------------------o Signup     |            |
//!     2        |                     o<==========>o ScanCard (in person)
//!     3        |-------------------->o Receive    |            |
//!     4       [X] Drop (attacker, highlighted)    |            |
//! ```
//!
//! One lifeline per device (A, B, C, ...) and one for the server, which is the whole server
//! side (membership service and message broker) and the attacker. One row per step: an arrow for
//! what moves (`Signup`, `Send`, `KeyUpdate`, group actions and `Resend` go device to server,
//! `Receive`, `FetchBundle` server to device, `ScanCard` device to device in person), a box for
//! what happens in one place (`GroupCreate`, `Commit`, `GoOffline`, `GoOnline`), and the
//! attacker's steps (`ForgeBundle`, `Drop`, `Duplicate`, `Reorder`, `Replay`, `Inject`,
//! `Restart`, `IssueCert`, `Compromise`, `Steal`) highlighted in red. A lifeline is dashed while
//! its device is offline; what the server newly knows after a step (a text, a personal term, a
//! key) is written in red beside it. Each row carries the step's `says` text as its `<title>`
//! (a tooltip), and `data-step` with its number.
//!
//! Every text is XML-escaped ([`escape`]) and characters XML cannot carry are replaced, so a
//! trace read from any file gives well-formed XML. There are no `id` attributes and no external
//! references, so several charts can be inlined in one HTML page.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::action::{Action, Forgery, Injection};
use crate::term::Dev;
use crate::trace::{AbstractState, Trace};

/// Row height, pixels.
const ROW: u32 = 30;
/// Top of the first row (below the lane headers).
const TOP: u32 = 64;
/// Width of the step-number column.
const STEP_COL: u32 = 44;
/// Distance between lifelines.
const LANE: u32 = 120;
/// Approximate width of one character of the labels (12px monospace).
const CHAR_W: u32 = 8;

/// A lifeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    /// The server side, which is the attacker.
    Server,
    /// A device.
    Dev(Dev),
}

/// How a mark is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// An honest step.
    Honest,
    /// A step in person, off the network.
    InPerson,
    /// The attacker's step.
    Attacker,
    /// Kept in the outbox: the device is offline, nothing reaches the server yet.
    Queued,
}

/// What one row draws.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mark {
    /// An arrow between two lifelines (both heads when `both`).
    Arrow {
        from: Lane,
        to: Lane,
        both: bool,
        style: Style,
    },
    /// A box on one lifeline.
    Box { on: Lane, style: Style },
}

/// One row of the chart.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    /// 1-based step number.
    number: usize,
    /// The action's vocabulary name.
    kind: &'static str,
    /// A short label drawn beside the marks.
    label: String,
    /// The step's description (the tooltip).
    says: String,
    /// What is drawn.
    mark: Mark,
    /// What the server newly knows after the step.
    learned: Vec<String>,
}

/// Escapes text for XML character data and attribute values, and replaces the characters XML 1.0
/// cannot carry (most control characters, unpaired surrogates cannot occur in a `str`) by U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The devices of a trace: those of its initial state and any an action names, in order.
fn devices(trace: &Trace) -> Vec<Dev> {
    let mut devs: BTreeSet<Dev> = trace.initial.devices.iter().map(|d| d.dev).collect();
    for s in &trace.steps {
        devs.extend(actors(&s.action));
    }
    devs.into_iter().collect()
}

/// Every device an action names.
fn actors(a: &Action) -> Vec<Dev> {
    match *a {
        Action::Signup(d)
        | Action::GoOffline(d)
        | Action::GoOnline(d)
        | Action::Receive(d)
        | Action::Commit(d)
        | Action::Compromise(d)
        | Action::Steal(d)
        | Action::IssueCert(d) => vec![d],
        Action::ScanCard { by, of }
        | Action::FetchBundle { by, of }
        | Action::ForgeBundle { by, of, .. } => vec![by, of],
        Action::Send { from, to, .. }
        | Action::KeyUpdate { from, to }
        | Action::Resend { from, to, .. } => vec![from, to],
        Action::GroupCreate { admin } => vec![admin],
        Action::GroupAdd { admin, member } | Action::GroupRemove { admin, member } => {
            vec![admin, member]
        }
        Action::GroupSend { from, .. } => vec![from],
        Action::GroupLeave { member } => vec![member],
        Action::GroupHandover { admin, to } => vec![admin, to],
        Action::Drop { inbox, .. }
        | Action::Duplicate { inbox, .. }
        | Action::Reorder { inbox }
        | Action::Inject { inbox, .. } => vec![inbox],
        Action::Replay { inbox, from, .. } => vec![inbox, from],
        Action::Restart => vec![],
    }
}

/// Whether `d` is online in `state` (true when the state does not know the device).
fn online(state: &AbstractState, d: Dev) -> bool {
    state
        .devices
        .iter()
        .find(|v| v.dev == d)
        .is_none_or(|v| v.online)
}

/// From a device to the server: an arrow, or a box when the device is offline (outbox).
fn upload(from: Dev, before: &AbstractState) -> Mark {
    if online(before, from) {
        Mark::Arrow {
            from: Lane::Dev(from),
            to: Lane::Server,
            both: false,
            style: Style::Honest,
        }
    } else {
        Mark::Box {
            on: Lane::Dev(from),
            style: Style::Queued,
        }
    }
}

/// The label and marks of one action; `before` is the state before it.
fn draw(a: &Action, before: &AbstractState) -> (String, Mark) {
    let attacker_box = Mark::Box {
        on: Lane::Server,
        style: Style::Attacker,
    };
    let down = |to: Dev, style: Style| Mark::Arrow {
        from: Lane::Server,
        to: Lane::Dev(to),
        both: false,
        style,
    };
    let offline_note = |d: Dev| {
        if online(before, d) { "" } else { " (outbox)" }
    };
    match *a {
        Action::Signup(d) => (format!("Signup {d}"), upload(d, before)),
        Action::ScanCard { by, of } => (
            format!("ScanCard {by} scans {of} (in person)"),
            Mark::Arrow {
                from: Lane::Dev(by),
                to: Lane::Dev(of),
                both: true,
                style: Style::InPerson,
            },
        ),
        Action::FetchBundle { by, of } => (
            format!("FetchBundle {of}'s bundle to {by}"),
            down(by, Style::Honest),
        ),
        Action::ForgeBundle { by, of, forgery } => (
            format!(
                "ForgeBundle {} as {of}'s bundle to {by}",
                match forgery {
                    Forgery::Impersonate => "server keys",
                    Forgery::SwapKeys => "swapped keys",
                }
            ),
            down(by, Style::Attacker),
        ),
        Action::Send { from, to, msg } => (
            format!("Send m{msg} {from}->{to}{}", offline_note(from)),
            upload(from, before),
        ),
        Action::KeyUpdate { from, to } => (
            format!("KeyUpdate {from}->{to}{}", offline_note(from)),
            upload(from, before),
        ),
        Action::GoOffline(d) => (
            format!("GoOffline {d}"),
            Mark::Box {
                on: Lane::Dev(d),
                style: Style::Honest,
            },
        ),
        Action::GoOnline(d) => (
            format!("GoOnline {d} (flushes outbox)"),
            Mark::Arrow {
                from: Lane::Dev(d),
                to: Lane::Server,
                both: false,
                style: Style::Honest,
            },
        ),
        Action::GroupCreate { admin } => (
            format!("GroupCreate by {admin}"),
            Mark::Box {
                on: Lane::Dev(admin),
                style: Style::Honest,
            },
        ),
        Action::GroupAdd { admin, member } => (
            format!("GroupAdd {admin} adds {member}, rekeys"),
            upload(admin, before),
        ),
        Action::GroupRemove { admin, member } => (
            format!("GroupRemove {admin} removes {member}"),
            upload(admin, before),
        ),
        Action::GroupSend { from, msg } => (
            format!("GroupSend g{msg} from {from}{}", offline_note(from)),
            upload(from, before),
        ),
        Action::GroupLeave { member } => (format!("GroupLeave {member}"), upload(member, before)),
        Action::GroupHandover { admin, to } => (
            format!("GroupHandover {admin}->{to}"),
            upload(admin, before),
        ),
        Action::Receive(d) => (format!("Receive {d}"), down(d, Style::Honest)),
        Action::Commit(d) => (
            format!("Commit {d}"),
            Mark::Box {
                on: Lane::Dev(d),
                style: Style::Honest,
            },
        ),
        Action::Resend { from, to, what } => {
            (format!("Resend {what} {from}->{to}"), upload(from, before))
        }
        Action::Drop { inbox, index } => {
            (format!("Drop #{index} of {inbox}'s queue"), attacker_box)
        }
        Action::Duplicate { inbox, index } => (
            format!("Duplicate #{index} of {inbox}'s queue"),
            attacker_box,
        ),
        Action::Reorder { inbox } => (format!("Reorder {inbox}'s queue"), attacker_box),
        Action::Replay { inbox, from, what } => (
            format!("Replay {from}'s first message ({what}) to {inbox}"),
            attacker_box,
        ),
        Action::Inject { inbox, injection } => (
            format!(
                "Inject {} into {inbox}'s queue",
                match injection {
                    Injection::FirstAs(p) => format!("first message as {p}"),
                    Injection::DataAs(p) => format!("data message as {p}"),
                    Injection::FirstWithOwnKeys(p) => format!("first message as {p}, own keys"),
                    Injection::GroupKeyAs(p) => format!("group key signed by {p}"),
                }
            ),
            attacker_box,
        ),
        Action::Restart => ("Restart: queues lost".to_string(), attacker_box),
        Action::IssueCert(d) => (format!("IssueCert as {d}"), attacker_box),
        Action::Compromise(d) => (
            format!("Compromise {d}: state leaks"),
            Mark::Arrow {
                from: Lane::Dev(d),
                to: Lane::Server,
                both: false,
                style: Style::Attacker,
            },
        ),
        Action::Steal(d) => (
            format!("Steal {d}'s sealed store"),
            Mark::Arrow {
                from: Lane::Dev(d),
                to: Lane::Server,
                both: false,
                style: Style::Attacker,
            },
        ),
    }
}

/// The rows of a trace, with what the server learned at each step.
fn rows(trace: &Trace) -> Vec<Row> {
    let mut before = &trace.initial;
    let mut out = Vec::with_capacity(trace.steps.len());
    for (i, step) in trace.steps.iter().enumerate() {
        let (label, mark) = draw(&step.action, before);
        let known: BTreeSet<&String> = before.server_knows.iter().collect();
        let learned = step
            .state
            .server_knows
            .iter()
            .filter(|k| !known.contains(k))
            .cloned()
            .collect();
        out.push(Row {
            number: i + 1,
            kind: step.action.name(),
            label,
            says: step.says.clone(),
            mark,
            learned,
        });
        before = &step.state;
    }
    out
}

/// Geometry of one chart.
struct Layout {
    lanes: Vec<Lane>,
    label_x: u32,
    width: u32,
    height: u32,
}

impl Layout {
    fn new(lanes: Vec<Lane>, rows: &[Row], title_chars: usize) -> Layout {
        let label_x = STEP_COL + LANE / 2 + LANE * lanes.len() as u32 - LANE / 2 + 16;
        let longest = rows
            .iter()
            .map(|r| {
                let learned: usize = r.learned.iter().map(|l| l.chars().count() + 2).sum();
                r.label.chars().count() + if learned > 0 { 16 + learned } else { 0 }
            })
            .max()
            .unwrap_or(0)
            .max(title_chars.saturating_sub(label_x as usize / CHAR_W as usize));
        Layout {
            label_x,
            width: label_x + CHAR_W * longest as u32 + 16,
            height: TOP + ROW * rows.len() as u32 + 24,
            lanes,
        }
    }

    fn x(&self, lane: Lane) -> u32 {
        let i = self.lanes.iter().position(|l| *l == lane).unwrap_or(0) as u32;
        STEP_COL + LANE / 2 + LANE * i
    }
}

/// Colours and dashes of a style: (stroke, dash array, text class).
fn paint(style: Style) -> (&'static str, &'static str) {
    match style {
        Style::Honest => ("#1f4e79", ""),
        Style::InPerson => ("#2e7d32", " stroke-dasharray=\"6 3\""),
        Style::Attacker => ("#c62828", ""),
        Style::Queued => ("#7a7a7a", " stroke-dasharray=\"2 3\""),
    }
}

/// Draws an arrowhead at (`x`, `y`) pointing right when `right`.
fn head(out: &mut String, x: u32, y: u32, right: bool, colour: &str) {
    let (x, y) = (x as i64, y as i64);
    let back = if right { x - 9 } else { x + 9 };
    let _ = write!(
        out,
        "<polygon points=\"{x},{y} {back},{} {back},{}\" fill=\"{colour}\"/>",
        y - 5,
        y + 5
    );
}

/// Renders a trace as a self-contained SVG document (see the module documentation).
pub fn render(trace: &Trace) -> String {
    let rows = rows(trace);
    let mut lanes = vec![Lane::Server];
    lanes.extend(devices(trace).into_iter().map(Lane::Dev));
    let title = format!(
        "{} (config {}, variant {})",
        trace.name, trace.config, trace.variant
    );
    let lay = Layout::new(lanes, &rows, title.chars().count());
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"sotto-chart\" width=\"{w}\" \
         height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" font-family=\"monospace\" \
         font-size=\"12\" data-steps=\"{n}\">",
        w = lay.width,
        h = lay.height,
        n = rows.len()
    );
    let _ = write!(out, "<title>{}</title>", escape(&title));
    let _ = write!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        lay.width, lay.height
    );
    let _ = write!(
        out,
        "<text x=\"8\" y=\"16\" font-weight=\"bold\">{}</text>",
        escape(&title)
    );
    // Lane headers.
    for &lane in &lay.lanes {
        let x = lay.x(lane);
        let (name, sub, colour) = match lane {
            Lane::Server => ("server", "attacker", "#c62828"),
            Lane::Dev(d) => (dev_name(d), "device", "#1f4e79"),
        };
        let _ = write!(
            out,
            "<g class=\"lane\" data-lane=\"{name}\"><rect x=\"{}\" y=\"26\" width=\"96\" height=\"28\" rx=\"4\" \
             fill=\"#f4f6f8\" stroke=\"{colour}\"/><text x=\"{x}\" y=\"38\" text-anchor=\"middle\" \
             font-weight=\"bold\">{name}</text><text x=\"{x}\" y=\"50\" text-anchor=\"middle\" \
             font-size=\"9\" fill=\"#555555\">{sub}</text></g>",
            x - 48
        );
    }
    // Lifelines, segment per row: dashed while the device is offline.
    let mut state = &trace.initial;
    for (i, step) in std::iter::once(None)
        .chain(trace.steps.iter().map(Some))
        .enumerate()
    {
        if let Some(s) = step {
            state = &s.state;
        }
        let y0 = if i == 0 {
            TOP - 10
        } else {
            TOP + ROW * (i as u32 - 1) + ROW / 2
        };
        let y1 = if i < rows.len() {
            TOP + ROW * i as u32 + ROW / 2
        } else {
            lay.height - 8
        };
        for &lane in &lay.lanes {
            let x = lay.x(lane);
            let dash = match lane {
                Lane::Dev(d) if !online(state, d) => " stroke-dasharray=\"3 4\"",
                _ => "",
            };
            let _ = write!(
                out,
                "<line x1=\"{x}\" y1=\"{y0}\" x2=\"{x}\" y2=\"{y1}\" stroke=\"#9aa5b1\" stroke-width=\"1.5\"{dash}/>"
            );
        }
    }
    // Rows.
    for r in &rows {
        let y = TOP + ROW * (r.number as u32 - 1) + ROW / 2;
        let attacker = matches!(
            r.mark,
            Mark::Arrow {
                style: Style::Attacker,
                ..
            } | Mark::Box {
                style: Style::Attacker,
                ..
            }
        );
        let _ = write!(
            out,
            "<g class=\"step{}\" data-step=\"{}\" data-action=\"{}\"><title>{}</title>",
            if attacker { " attacker" } else { "" },
            r.number,
            r.kind,
            escape(&r.says)
        );
        if attacker {
            let _ = write!(
                out,
                "<rect x=\"2\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fdecea\"/>",
                y - ROW / 2 + 1,
                lay.width - 4,
                ROW - 2
            );
        }
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555555\">{}</text>",
            STEP_COL - 8,
            y + 4,
            r.number
        );
        match r.mark {
            Mark::Arrow {
                from,
                to,
                both,
                style,
            } => {
                let (colour, dash) = paint(style);
                let (x1, x2) = (lay.x(from), lay.x(to));
                let right = x2 >= x1;
                // Stop short of the lifelines so the heads are visible.
                let (a, b) = if right {
                    (x1 + 4, x2 - 4)
                } else {
                    (x1 - 4, x2 + 4)
                };
                let _ = write!(
                    out,
                    "<line x1=\"{a}\" y1=\"{y}\" x2=\"{b}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>"
                );
                head(&mut out, b, y, right, colour);
                if both {
                    head(&mut out, a, y, !right, colour);
                }
            }
            Mark::Box { on, style } => {
                let (colour, dash) = paint(style);
                let x = lay.x(on);
                let _ = write!(
                    out,
                    "<rect x=\"{}\" y=\"{}\" width=\"40\" height=\"{}\" rx=\"3\" fill=\"#ffffff\" \
                     stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                    x - 20,
                    y - 8,
                    16
                );
            }
        }
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\"{}>{}</text>",
            lay.label_x,
            y + 4,
            if attacker {
                " fill=\"#c62828\" font-weight=\"bold\""
            } else {
                ""
            },
            escape(&r.label)
        );
        if !r.learned.is_empty() {
            let _ = write!(
                out,
                "<text x=\"{}\" y=\"{}\" fill=\"#c62828\" class=\"learned\">server learns: {}</text>",
                lay.label_x + CHAR_W * (r.label.chars().count() as u32 + 2),
                y + 4,
                escape(&r.learned.join(", "))
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

/// The lane name of a device.
fn dev_name(d: Dev) -> &'static str {
    match d {
        Dev::A => "A",
        Dev::B => "B",
        Dev::C => "C",
        Dev::D => "D",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::shortest_counterexample;
    use crate::scenario::Config;
    use crate::{SottoModel, Variant};

    fn model() -> SottoModel {
        SottoModel::new(Config::default_config(), Variant::None)
    }

    /// A short real run: every action the first `n` enabled choices take.
    fn walk(m: &SottoModel, n: usize) -> Vec<Action> {
        use stateright::Model;
        let mut s = m.init_states().remove(0);
        let mut actions = Vec::new();
        for i in 0..n {
            let mut enabled = Vec::new();
            m.actions(&s, &mut enabled);
            let Some((a, next)) = enabled
                .into_iter()
                .cycle()
                .skip(i)
                .take(64)
                .find_map(|a| m.next_state(&s, a.clone()).map(|n| (a, n)))
            else {
                break;
            };
            actions.push(a);
            s = next;
        }
        actions
    }

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML ({e}):\n{svg}"))
    }

    fn steps_of(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter_map(|n| n.attribute("data-step").map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_real_run_is_well_formed_with_every_step() {
        let m = model();
        let actions = walk(&m, 30);
        assert!(actions.len() >= 10, "the walk is too short: {actions:?}");
        let trace = Trace::record(&m, "walk <&> \"quoted\"", &actions).expect("replays");
        let svg = render(&trace);
        let doc = parse(&svg);
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let steps = steps_of(&doc);
        let want: Vec<String> = (1..=trace.steps.len()).map(|i| i.to_string()).collect();
        assert_eq!(steps, want);
        // Every step's description is its row's tooltip, unescaped by the parser.
        for (step, g) in trace.steps.iter().zip(
            doc.descendants()
                .filter(|n| n.attribute("data-step").is_some()),
        ) {
            let title = g
                .children()
                .find(|c| c.has_tag_name("title"))
                .and_then(|t| t.text());
            assert_eq!(title, Some(step.says.as_str()));
            assert_eq!(g.attribute("data-action"), Some(step.action.name()));
        }
        // Lanes: the server and every device.
        let lanes: Vec<&str> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-lane"))
            .collect();
        assert_eq!(lanes, ["server", "A", "B", "C"]);
        assert!(svg.contains("walk &lt;&amp;&gt; &quot;quoted&quot;"));
    }

    #[test]
    fn hostile_text_is_escaped_and_stays_xml() {
        let m = model();
        let mut trace = Trace::record(&m, "x", &walk(&m, 4)).expect("replays");
        let evil = "</title><script>alert(1)</script>&amp; ' \" \u{0}\u{1b}]]>";
        trace.name = evil.to_string();
        trace.config = evil.to_string();
        for s in &mut trace.steps {
            s.says = evil.to_string();
            s.state.server_knows.push(evil.to_string());
        }
        let svg = render(&trace);
        assert!(!svg.contains("<script"), "{svg}");
        let doc = parse(&svg);
        let titles: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .filter_map(|n| n.text())
            .collect();
        let clean = evil.replace(['\u{0}', '\u{1b}'], "\u{FFFD}");
        assert!(titles.iter().skip(1).all(|t| *t == clean), "{titles:?}");
        assert_eq!(steps_of(&doc).len(), trace.steps.len());
    }

    #[test]
    fn an_empty_trace_renders() {
        let m = model();
        let trace = Trace::record(&m, "empty", &[]).expect("replays");
        let doc_text = render(&trace);
        let doc = parse(&doc_text);
        assert!(steps_of(&doc).is_empty());
    }

    #[test]
    fn a_counterexample_highlights_the_attacker() {
        let config = Config::named("small").expect("small");
        let v = Variant::NoReplayCache;
        let (_, actions) = shortest_counterexample(&config, v, 2).expect("it breaks");
        let m = SottoModel::new(config, v);
        let trace = Trace::record(&m, "counterexample", &actions).expect("replays");
        let svg = render(&trace);
        let doc = parse(&svg);
        assert_eq!(steps_of(&doc).len(), actions.len());
        let attacker = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("step attacker"))
            .count();
        let want = actions.iter().filter(|a| a.by_attacker()).count();
        assert!(want > 0, "a replay attack: {actions:?}");
        assert_eq!(attacker, want);
    }

    #[test]
    fn escape_covers_the_five_entities() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(escape("ok\tline\n"), "ok\tline\n");
        assert_eq!(escape("\u{7}"), "\u{FFFD}");
    }
}
