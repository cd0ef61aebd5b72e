//! The client implementation under test, as the driver speaks to it: the adapter protocol
//! (`sotto_adapter::protocol`, docs/adapter.md), answered in-process by the reference adapter or
//! by an adapter process over JSON lines on its stdin and stdout. Every request line and every
//! answer is checked against the protocol's JSON Schema (`adapter/schema/`), so an adapter that
//! drifts from the documented protocol fails with the field that is wrong.
//!
//! ```text
//!   Driver --ask(Request)--> Subject::InProcess(Reference::handle)          (sotto check)
//!                        \-> Subject::Process(child: stdin <- line, stdout -> line)  (drive)
//!          <-- result object (schema result_<op>) | Failure{kind} | protocol violation
//! ```

use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use sotto_adapter::protocol::{FailureKind, Request, RequestLine, ResponseLine};
use sotto_adapter::reference::Reference;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long an adapter may take to answer one request (a signup establishes the inbox first).
const ANSWER_WAIT: Duration = Duration::from_secs(60);
/// Longest answer line taken from an adapter.
const MAX_ANSWER: usize = 4 << 20;

/// The command line of an adapter process, run by `sh -c` (so it may carry arguments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterCommand(pub String);

/// Why a step could not be done through the subject.
#[derive(Debug)]
pub(crate) enum StepError {
    /// The step failed: the implementation refused or misbehaved, or the adapter broke the
    /// protocol (the trace fails here).
    Failed(String),
    /// The adapter does not implement this op (the trace is a prefix up to here).
    Unsupported(String),
}

impl From<String> for StepError {
    fn from(s: String) -> StepError {
        StepError::Failed(s)
    }
}

impl From<&str> for StepError {
    fn from(s: &str) -> StepError {
        StepError::Failed(s.to_owned())
    }
}

/// The schema validators: any line, and each op's result object.
struct Schemas {
    request: jsonschema::Validator,
    response: jsonschema::Validator,
    results: std::collections::BTreeMap<String, jsonschema::Validator>,
}

/// The validator of `$defs/<name>` of the committed schema.
fn def_validator(root: &Value, name: &str) -> Result<jsonschema::Validator, String> {
    let mut schema = root.clone();
    let obj = schema
        .as_object_mut()
        .ok_or("the schema is not an object")?;
    obj.remove("oneOf");
    obj.insert("$ref".into(), Value::String(format!("#/$defs/{name}")));
    jsonschema::validator_for(&schema).map_err(|e| format!("schema $defs/{name}: {e}"))
}

fn schemas() -> Result<&'static Schemas, String> {
    static SCHEMAS: OnceLock<Result<Schemas, String>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            let root: Value = serde_json::from_str(sotto_adapter::SCHEMA_V1)
                .map_err(|e| format!("the adapter schema is not JSON: {e}"))?;
            let mut results = std::collections::BTreeMap::new();
            let defs = root
                .get("$defs")
                .and_then(Value::as_object)
                .ok_or("the adapter schema has no $defs")?;
            for name in defs.keys().filter(|k| k.starts_with("result_")) {
                results.insert(name.clone(), def_validator(&root, name)?);
            }
            Ok(Schemas {
                request: def_validator(&root, "request")?,
                response: def_validator(&root, "response")?,
                results,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks `value` against `validator`; the error names the first wrong field.
fn check(validator: &jsonschema::Validator, value: &Value, what: &str) -> Result<(), String> {
    validator.validate(value).map_err(|e| {
        format!(
            "{what} does not match the adapter schema at {}: {e}",
            e.instance_path()
        )
    })
}

pub(crate) struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Where the adapter's stderr goes (its tail is quoted when it breaks the protocol).
    log: std::path::PathBuf,
}

/// The implementation under test.
pub(crate) enum Subject {
    /// The reference adapter, called directly.
    InProcess(Box<Reference>),
    /// An adapter process.
    Process(Box<Process>),
}

/// Summarises what an adapter wrote to stderr (its last lines).
fn stderr_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
    if tail.is_empty() {
        String::new()
    } else {
        format!("\n  adapter stderr (last lines):\n    {tail}")
    }
}

impl Subject {
    /// The reference adapter in this process, or the adapter process `command` (its stderr in
    /// `dir/adapter.log`, quoted beside a failure), after the `hello` exchange.
    pub(crate) async fn start(
        command: Option<&AdapterCommand>,
        dir: &Path,
    ) -> Result<(Subject, String), String> {
        schemas()?;
        let mut subject = match command {
            None => Subject::InProcess(Box::new(Reference::new())),
            Some(AdapterCommand(cmd)) => {
                let log = dir.join("adapter.log");
                let stderr = std::fs::File::create(&log)
                    .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
                let mut child = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(stderr)
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("cannot start the adapter `{cmd}`: {e}"))?;
                let stdin = child.stdin.take().ok_or("the adapter has no stdin")?;
                let stdout = child.stdout.take().ok_or("the adapter has no stdout")?;
                Subject::Process(Box::new(Process {
                    child,
                    stdin,
                    stdout: BufReader::new(stdout),
                    log,
                }))
            }
        };
        let hello: sotto_adapter::protocol::Hello = match subject
            .ask(Request::Hello {
                versions: vec![sotto_adapter::protocol::VERSION],
            })
            .await
        {
            Ok(h) => h,
            Err(StepError::Failed(s) | StepError::Unsupported(s)) => {
                return Err(format!("hello: {s}{}", subject.stderr_tail()));
            }
        };
        if hello.version != sotto_adapter::protocol::VERSION {
            return Err(format!(
                "hello: the adapter chose version {}, the runner speaks {}",
                hello.version,
                sotto_adapter::protocol::VERSION
            ));
        }
        Ok((subject, hello.implementation))
    }

    /// The last lines the adapter process wrote to stderr, to quote beside a failure (empty
    /// in-process, or when it wrote nothing).
    pub(crate) fn stderr_tail(&self) -> String {
        match self {
            Subject::InProcess(_) => String::new(),
            Subject::Process(p) => stderr_tail(&p.log),
        }
    }

    /// Asks one thing and reads the typed result.
    pub(crate) async fn ask<T: DeserializeOwned>(
        &mut self,
        request: Request,
    ) -> Result<T, StepError> {
        let op = request.op();
        let value = self.exchange(request).await?;
        let schemas = schemas()?;
        let validator = schemas
            .results
            .get(&format!("result_{op}"))
            .ok_or_else(|| format!("the adapter schema has no result_{op}"))?;
        check(validator, &value, &format!("the answer to {op}"))?;
        serde_json::from_value(value).map_err(|e| {
            StepError::Failed(format!(
                "the answer to {op} is not what the protocol says: {e}"
            ))
        })
    }

    async fn exchange(&mut self, request: Request) -> Result<Value, StepError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let op = request.op();
        let line = RequestLine { id, request };
        let schemas = schemas()?;
        let request_json =
            serde_json::to_value(&line).map_err(|e| format!("encoding the request {op}: {e}"))?;
        // The runner's own requests follow the schema too (a check of the schema itself).
        check(
            &schemas.request,
            &request_json,
            &format!("the request {op}"),
        )?;
        let answer = match self {
            Subject::InProcess(reference) => {
                let result = reference.handle(line.request).await;
                let (ok, error) = match result {
                    Ok(v) => (Some(v), None),
                    Err(f) => (None, Some(f)),
                };
                let answer = ResponseLine { id, ok, error };
                serde_json::to_value(&answer)
                    .map_err(|e| format!("encoding the answer to {op}: {e}"))?
            }
            Subject::Process(p) => {
                // The line as the docs show it: `id`, then `op`, then the op's fields.
                let text = serde_json::to_string(&line)
                    .map_err(|e| format!("encoding the request {op}: {e}"))?;
                p.exchange(id, op, text).await?
            }
        };
        check(&schemas.response, &answer, &format!("the answer to {op}"))?;
        let answer: ResponseLine = serde_json::from_value(answer)
            .map_err(|e| format!("the answer to {op} is not a response line: {e}"))?;
        if answer.id != id {
            return Err(StepError::Failed(format!(
                "the answer to {op} (request {id}) carries id {}",
                answer.id
            )));
        }
        match (answer.ok, answer.error) {
            (Some(v), None) => Ok(v),
            (None, Some(f)) if f.kind == FailureKind::Unsupported => {
                Err(StepError::Unsupported(format!("{op} ({})", f.message)))
            }
            (None, Some(f)) => Err(StepError::Failed(format!("{op}: {f}"))),
            _ => Err(StepError::Failed(format!(
                "the answer to {op} has both or neither of ok and error"
            ))),
        }
    }

    /// Ends the run: `shutdown`, then the process must exit (it is killed after a grace time).
    pub(crate) async fn shutdown(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(20),
            self.ask::<sotto_adapter::protocol::Done>(Request::Shutdown),
        )
        .await;
        if let Subject::Process(mut p) = self {
            if tokio::time::timeout(Duration::from_secs(5), p.child.wait())
                .await
                .is_err()
            {
                let _ = p.child.kill().await;
            }
        }
    }
}

impl Process {
    /// Why the adapter stopped talking: its exit status if it exited (within a second).
    async fn gone(&mut self, op: &str, how: &str) -> String {
        let status = tokio::time::timeout(Duration::from_secs(1), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let exited = status.map_or_else(
            || "the adapter".to_owned(),
            |s| format!("the adapter exited ({s}) and"),
        );
        format!("{exited} {how} before answering {op}")
    }

    async fn exchange(&mut self, id: u64, op: &str, mut text: String) -> Result<Value, String> {
        text.push('\n');
        let written = match self.stdin.write_all(text.as_bytes()).await {
            Ok(()) => self.stdin.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            return Err(self.gone(op, &format!("stopped reading ({e})")).await);
        }
        let mut buf = Vec::new();
        let mut limit = (&mut self.stdout).take(MAX_ANSWER as u64 + 1);
        let read = tokio::time::timeout(ANSWER_WAIT, limit.read_until(b'\n', &mut buf)).await;
        match read {
            Err(_) => {
                return Err(format!(
                    "the adapter did not answer {op} (request {id}) within {ANSWER_WAIT:?}"
                ));
            }
            Ok(Err(e)) => {
                return Err(format!("reading the answer to {op}: {e}"));
            }
            Ok(Ok(0)) => return Err(self.gone(op, "closed its output").await),
            Ok(Ok(_)) => {}
        }
        if buf.last() != Some(&b'\n') {
            return Err(if buf.len() > MAX_ANSWER {
                format!("the answer to {op} is longer than {MAX_ANSWER} bytes")
            } else {
                format!("the adapter's output ended inside the answer to {op}")
            });
        }
        let line = String::from_utf8_lossy(&buf);
        serde_json::from_str(&line).map_err(|e| {
            let shown: String = line.chars().take(200).collect();
            format!("the answer to {op} is not JSON ({e}): {shown:?}")
        })
    }
}
