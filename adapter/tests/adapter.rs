//! The adapter protocol as documented and as run:
//!
//! - the committed JSON Schema is a valid draft 2020-12 schema, and it names exactly the ops the
//!   Rust types speak, each with a request and a result;
//! - every example line of docs/adapter.md matches the schema (each answer also its op's
//!   result), and parses as the Rust types;
//! - `sotto-conformance drive` through this crate's binary passes traces; an adapter that answers
//!   with the wrong shape fails, with the schema's complaint; with `--features mutations`, the
//!   binary with a mutation switch on fails the drive.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sotto_adapter::protocol::{Request, RequestLine, ResponseLine};
use sotto_conformance::drive::{self, DriveOptions, DriveVerdict};
use sotto_conformance::replay::{self, AdapterCommand, Broker};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    serde_json::from_str(sotto_adapter::SCHEMA_V1).expect("the schema is JSON")
}

/// The validator of `$defs/<name>`.
fn def(name: &str) -> jsonschema::Validator {
    let mut s = schema();
    let obj = s.as_object_mut().expect("an object");
    obj.remove("oneOf");
    obj.insert("$ref".into(), Value::String(format!("#/$defs/{name}")));
    jsonschema::validator_for(&s).expect("compiles")
}

#[test]
fn the_schema_is_valid_draft_2020_12() {
    jsonschema::meta::validate(&schema()).expect("valid against its metaschema");
    jsonschema::validator_for(&schema()).expect("compiles");
}

/// The example lines of docs/adapter.md (every line of a ```json block).
fn doc_lines() -> Vec<String> {
    let md = std::fs::read_to_string(root().join("docs/adapter.md")).expect("docs/adapter.md");
    let mut out = Vec::new();
    let mut inside = false;
    for line in md.lines() {
        match (inside, line.trim()) {
            (false, "```json") => inside = true,
            (true, "```") => inside = false,
            (true, l) if !l.is_empty() => out.push(l.to_owned()),
            _ => {}
        }
    }
    out
}

#[test]
fn every_example_of_the_docs_matches_the_schema_and_the_types() {
    let lines = doc_lines();
    assert!(
        lines.len() > 40,
        "the docs' examples: {} lines",
        lines.len()
    );
    let (request, response) = (def("request"), def("response"));
    let whole = jsonschema::validator_for(&schema()).expect("compiles");
    let mut last_op: Option<String> = None;
    let mut ops = BTreeSet::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(whole.is_valid(&v), "not a line of the protocol: {line}");
        if v.get("op").is_some() {
            if let Err(e) = request.validate(&v) {
                panic!("{line}: {e} at {}", e.instance_path());
            }
            let parsed: RequestLine =
                serde_json::from_value(v).unwrap_or_else(|e| panic!("{line}: {e}"));
            ops.insert(parsed.request.op().to_owned());
            last_op = Some(parsed.request.op().to_owned());
        } else {
            if let Err(e) = response.validate(&v) {
                panic!("{line}: {e} at {}", e.instance_path());
            }
            let parsed: ResponseLine =
                serde_json::from_value(v).unwrap_or_else(|e| panic!("{line}: {e}"));
            if let (Some(ok), Some(op)) = (&parsed.ok, last_op.take()) {
                let result = def(&format!("result_{op}"));
                if let Err(e) = result.validate(ok) {
                    panic!("the answer to {op}: {line}: {e} at {}", e.instance_path());
                }
            }
        }
    }
    let defs: BTreeSet<String> = schema()["$defs"]
        .as_object()
        .expect("$defs")
        .keys()
        .filter_map(|k| k.strip_prefix("request_").map(str::to_owned))
        .collect();
    assert_eq!(
        ops, defs,
        "the docs show an example of every op of the schema"
    );
}

#[test]
fn the_schema_names_exactly_the_ops_of_the_types_with_a_result_each() {
    let s = schema();
    let defs = s["$defs"].as_object().expect("$defs");
    let requests: BTreeSet<&str> = defs
        .keys()
        .filter_map(|k| k.strip_prefix("request_"))
        .collect();
    let results: BTreeSet<&str> = defs
        .keys()
        .filter_map(|k| k.strip_prefix("result_"))
        .collect();
    assert_eq!(requests, results, "a result for every request");
    for op in &requests {
        // The schema's shape of each op parses as the Rust request with that op name.
        let props = defs[&format!("request_{op}")]["properties"]
            .as_object()
            .expect("properties");
        let mut line = serde_json::Map::new();
        for (k, p) in props {
            let v = match (k.as_str(), p.get("$ref").and_then(Value::as_str)) {
                ("id", _) => Value::from(1),
                ("op", _) => Value::from(*op),
                (_, Some("#/$defs/device")) => Value::from("A"),
                (_, Some("#/$defs/user_id")) => Value::from("aaaaaaaaaaaaaaaa"),
                (_, Some("#/$defs/id16")) => Value::from("00".repeat(16)),
                (_, Some("#/$defs/hex")) => Value::from("00"),
                _ => match p.get("type").and_then(Value::as_str) {
                    Some("boolean") => Value::from(true),
                    Some("array") if k == "versions" => Value::from(vec![1]),
                    Some("array") => Value::Array(vec![]),
                    _ if k == "membership_url" => Value::from("https://127.0.0.1:1"),
                    _ if k == "ca_pem" => Value::from("-----BEGIN CERTIFICATE-----"),
                    _ => Value::from("x"),
                },
            };
            line.insert(k.clone(), v);
        }
        let line = Value::Object(line);
        def("request")
            .validate(&line)
            .unwrap_or_else(|e| panic!("{op}: the built line {line} is not valid: {e}"));
        let parsed: RequestLine = serde_json::from_value(line.clone())
            .unwrap_or_else(|e| panic!("{op}: the schema's request does not parse: {e}"));
        assert_eq!(parsed.request.op(), *op);
    }
    // And the other way: every Rust op has its schema entry (Shutdown is the simplest check
    // that the `op` names match).
    assert!(requests.contains(Request::Shutdown.op()));
}

/// One small trace: a message from a verified contact.
fn one_trace() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let t = replay::load_traces(&root().join("traces/small"))
        .expect("traces")
        .into_iter()
        .find(|t| t.name.starts_with("sometimes: Req5"))
        .expect("the Req5 trace");
    let json = serde_json::to_string(&t).expect("trace");
    std::fs::write(tmp.path().join("0.json"), json).expect("write");
    tmp
}

/// A fake adapter in `sh`: it answers `hello` properly, then every other request with `defect`
/// (shell code that may use `$id`, the request's id).
fn fake(defect: &str) -> AdapterCommand {
    AdapterCommand(format!(
        r#"n=0; while IFS= read -r line; do id=$(printf '%s' "$line" | sed 's/^{{"id":\([0-9]*\).*/\1/'); n=$((n+1)); if [ $n -eq 1 ]; then printf '{{"id":%s,"ok":{{"version":1,"implementation":"fake"}}}}\n' "$id"; else {defect}; fi; done"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_adapter_fails_with_what_it_did_wrong() {
    let cases = [
        (r#"printf '{"id":%s,"ok":{}}\n' $((id+1))"#, "carries id"),
        ("echo 'hello there'", "is not JSON"),
        (
            r#"printf '{"id":%s,"ok":{},"error":{"kind":"failed","message":"x"}}\n' "$id""#,
            "the answer to signup does not match the adapter schema",
        ),
        (
            r#"printf '{"id":%s' "$id"; exit 0"#,
            "the adapter's output ended inside the answer to signup",
        ),
        (
            r#"printf '{"id":%s,"error":{"kind":"failed","message":"no network"}}\n' "$id""#,
            "signup: failed: no network",
        ),
    ];
    for (defect, expect) in cases {
        let report = drive(fake(defect), one_trace()).await;
        assert_eq!(
            report.verdict,
            DriveVerdict::Fail,
            "{defect}: {}",
            report.render()
        );
        let failures = report.brokers[0].failures.join("\n");
        assert!(failures.contains(expect), "{defect}: {failures}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_lacks_an_op_is_incomplete_never_a_pass() {
    let lacks =
        fake(r#"printf '{"id":%s,"error":{"kind":"unsupported","message":"not yet"}}\n' "$id""#);
    let report = drive(lacks, one_trace()).await;
    assert_eq!(
        report.verdict,
        DriveVerdict::Incomplete,
        "{}",
        report.render()
    );
    assert!(!report.passed());
    assert!(
        report
            .render()
            .contains("the adapter does not implement it"),
        "{}",
        report.render()
    );
}

/// Two small traces: a message from a verified contact, and a duplicate dropped.
fn two_traces() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut picked = 0;
    for t in replay::load_traces(&root().join("traces/small")).expect("traces") {
        if t.name.starts_with("sometimes: Req5") || t.name.starts_with("sometimes: RX-2") {
            let path = dir.join(format!("{picked}.json"));
            std::fs::write(&path, serde_json::to_string(&t).expect("trace")).expect("write");
            picked += 1;
        }
    }
    assert_eq!(picked, 2, "the two traces");
    tmp
}

fn adapter(args: &str) -> AdapterCommand {
    AdapterCommand(format!("{} {args}", env!("CARGO_BIN_EXE_sotto-adapter")))
}

async fn drive(adapter: AdapterCommand, traces: tempfile::TempDir) -> drive::DriveReport {
    drive_charted(adapter, traces, None).await
}

async fn drive_charted(
    adapter: AdapterCommand,
    traces: tempfile::TempDir,
    charts: Option<PathBuf>,
) -> drive::DriveReport {
    drive::run(&DriveOptions {
        adapter,
        traces: traces.path().to_path_buf(),
        brokers: vec![Broker::Embedded],
        charts,
    })
    .await
    .expect("the drive runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_adapter_passes_the_driven_traces() {
    let charts = tempfile::tempdir().expect("temp dir");
    let report = drive_charted(adapter(""), two_traces(), Some(charts.path().to_owned())).await;
    assert_eq!(report.verdict, DriveVerdict::Pass, "{}", report.render());
    assert!(report.implementation.starts_with("sotto-client "));
    assert_eq!(report.brokers[0].traces_passed, 2);
    // --charts: each trace as a chart beside its steps.
    let mut files: Vec<String> = std::fs::read_dir(charts.path())
        .expect("charts")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    for f in files.iter().filter(|f| f.ends_with(".svg")) {
        let svg = std::fs::read_to_string(charts.path().join(f)).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("data-steps"), "{f}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_answers_the_wrong_shape_fails_with_the_schema_s_complaint() {
    // Answers every request as if it were `hello`: fine for hello, wrong for signup.
    let liar = AdapterCommand(
        r#"while IFS= read -r line; do id=$(printf '%s' "$line" | sed 's/^{"id":\([0-9]*\).*/\1/'); printf '{"id":%s,"ok":{"version":1,"implementation":"liar"}}\n' "$id"; done"#
            .to_owned(),
    );
    let report = drive(liar, two_traces()).await;
    assert_eq!(report.verdict, DriveVerdict::Fail, "{}", report.render());
    let failures = report.brokers[0].failures.join("\n");
    assert!(
        failures.contains("the answer to signup does not match the adapter schema"),
        "{failures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_does_not_start_is_a_clear_error() {
    let err = replay::greet(&AdapterCommand("exit 3".to_owned()))
        .await
        .expect_err("no hello");
    let err = err.to_string();
    assert!(
        err.contains("the adapter exited (exit status: 3) and")
            && err.contains("before answering hello"),
        "{err}"
    );
}

/// The broken client behind the same adapter: acknowledging before committing (RX-4) is
/// caught by the check right after the acknowledgement.
#[cfg(feature = "mutations")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutated_adapter_fails_the_drive() {
    let report = drive(adapter("--mutation ack-before-commit"), two_traces()).await;
    assert_eq!(report.verdict, DriveVerdict::Fail, "{}", report.render());
    let failures = report.brokers[0].failures.join("\n");
    assert!(failures.contains("RX-4"), "{failures}");
}
