//! Headless Chromium for tests: load a page, read its DOM after its scripts ran, take a
//! screenshot, and collect every console error, uncaught exception and failed load.
//!
//! ```text
//!   test ──stdin (fd 3)──> chromium --headless --remote-debugging-pipe ──stdout (fd 4)──> test
//!          DevTools protocol, JSON messages ended by NUL: Target.attachToTarget (flatten),
//!          Runtime.enable, Log.enable, Page.navigate, Runtime.evaluate, Page.captureScreenshot
//! ```
//!
//! Why the DevTools protocol and not `--enable-logging=stderr --v=0`: with those flags Chromium
//! (156 on Debian) logs every console call as `INFO:CONSOLE:<line>] "text", source: ...`,
//! whatever its level (`console.log` and `console.error` look the same), and logs nothing for a
//! resource that failed to load. Over the protocol, `Runtime.consoleAPICalled` carries the level,
//! `Runtime.exceptionThrown` every uncaught exception and `Log.entryAdded` (level `error`) every
//! failed load. The pipe needs no port; the two extra descriptors come from `sh` (`3<&0 4>&1`).
//!
//! Chromium may reach loopback only: `--host-resolver-rules` maps every other name to
//! "not found", so a page that loads something from the internet fails here as it would offline.
//!
//! Every wait is bounded; the browser is killed when [`Browser`] drops. [`find`] returns `None`
//! (with a line on stderr) where Chromium is not installed, so a caller can skip; CI installs it
//! and sets `SOTTO_REQUIRE_CHROMIUM=1`, which turns that into a panic.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The executables tried, in order.
const NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// Chromium on `PATH`, or `None` with a line on stderr (unless `SOTTO_REQUIRE_CHROMIUM=1`:
/// then it panics).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = NAMES.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("SOTTO_REQUIRE_CHROMIUM").is_none(),
            "SOTTO_REQUIRE_CHROMIUM is set but Chromium is not installed"
        );
        eprintln!("chromium is not installed (apt-get install chromium): skipped");
    }
    found
}

/// Why a page could not be inspected.
#[derive(Debug)]
pub enum ChromiumError {
    /// Starting the browser, or talking to it.
    Io(std::io::Error),
    /// The browser did not answer in time, or closed the pipe.
    Timeout(String),
    /// The browser answered with an error.
    Protocol(String),
    /// The page did not become ready (the `ready` expression stayed false).
    NotReady(String),
}

impl std::fmt::Display for ChromiumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChromiumError::Io(e) => write!(f, "chromium: {e}"),
            ChromiumError::Timeout(w) => write!(f, "chromium: no answer: {w}"),
            ChromiumError::Protocol(w) => write!(f, "chromium: {w}"),
            ChromiumError::NotReady(w) => write!(f, "page not ready: {w}"),
        }
    }
}

impl std::error::Error for ChromiumError {}

impl From<std::io::Error> for ChromiumError {
    fn from(e: std::io::Error) -> Self {
        ChromiumError::Io(e)
    }
}

/// What to load and how long to wait.
#[derive(Clone, Debug)]
pub struct Visit<'a> {
    /// The URL (`file://...`, `http://127.0.0.1:PORT/`).
    pub url: &'a str,
    /// A JavaScript expression that is true once the page shows what the test waits for (polled
    /// until `wait` runs out); `"true"` takes the page as loaded.
    pub ready: &'a str,
    /// The window size (the screenshot's size).
    pub window: (u32, u32),
    /// Upper bound of the whole visit after the browser started.
    pub wait: Duration,
}

/// What a page showed.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// `document.documentElement.outerHTML` after the page was ready.
    pub dom: String,
    /// Console errors and assertions, uncaught exceptions, log entries of level `error`
    /// (failed loads among them): empty for a clean page.
    pub errors: Vec<String>,
    /// Every console message, `level: text` (for diagnostics).
    pub console: Vec<String>,
    /// The screenshot, PNG.
    pub screenshot: Vec<u8>,
}

/// A running headless Chromium, killed on drop.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    events: Vec<Value>,
    stderr_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts `chromium` headless with a fresh profile in a temporary directory.
    pub fn start(chromium: &Path, window: (u32, u32)) -> Result<Browser, ChromiumError> {
        let dir = tempfile::Builder::new()
            .prefix("sotto-chromium-")
            .tempdir()?;
        let stderr_file = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_file)?;
        let mut child = Command::new("sh")
            .arg("-c")
            // fd 3: what the browser reads (our stdin pipe); fd 4: what it writes (our stdout
            // pipe); its own stdout goes to stderr.
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 1>&2")
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(format!("--window-size={},{}", window.0, window.1))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let (Some(stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(ChromiumError::Protocol("no pipes".into()));
        };
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Browser {
            child,
            stdin,
            messages,
            next_id: 0,
            events: Vec::new(),
            stderr_file,
            _dir: dir,
        })
    }

    /// The browser's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }

    /// Sends a command and waits (until `deadline`) for its answer; events meanwhile are kept.
    fn call(
        &mut self,
        method: &str,
        params: Value,
        session: Option<&str>,
        deadline: Instant,
    ) -> Result<Value, ChromiumError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg)
            .map_err(|e| ChromiumError::Protocol(format!("{method}: {e}")))?;
        bytes.push(0);
        self.stdin.write_all(&bytes)?;
        self.stdin.flush()?;
        loop {
            let v = self.next_message(deadline, method)?;
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    return Err(ChromiumError::Protocol(format!("{method}: {e}")));
                }
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
            self.events.push(v);
        }
    }

    fn next_message(&mut self, deadline: Instant, what: &str) -> Result<Value, ChromiumError> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Timeout) => Err(ChromiumError::Timeout(what.to_owned())),
            Err(RecvTimeoutError::Disconnected) => Err(ChromiumError::Timeout(format!(
                "{what}: the browser closed the pipe; stderr:\n{}",
                self.stderr()
            ))),
        }
    }

    /// Keeps the events that arrive until `until`.
    fn drain(&mut self, until: Instant) {
        while let Ok(v) = self.next_message(until, "drain") {
            self.events.push(v);
        }
    }

    /// Loads `visit.url` in a new tab, waits until `visit.ready` holds, and returns the DOM, the
    /// screenshot and every error the page reported.
    pub fn visit(&mut self, visit: &Visit<'_>) -> Result<Page, ChromiumError> {
        let deadline = Instant::now() + visit.wait;
        let target = self.call(
            "Target.createTarget",
            json!({ "url": "about:blank" }),
            None,
            deadline,
        )?;
        let target_id = target["targetId"].clone();
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
            None,
            deadline,
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| ChromiumError::Protocol("no session id".into()))?
            .to_owned();
        let s = Some(session.as_str());
        for m in ["Runtime.enable", "Log.enable", "Page.enable"] {
            self.call(m, json!({}), s, deadline)?;
        }
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": visit.window.0, "height": visit.window.1,
                    "deviceScaleFactor": 1, "mobile": false }),
            s,
            deadline,
        )?;
        self.events.clear();
        let nav = self.call("Page.navigate", json!({ "url": visit.url }), s, deadline)?;
        if let Some(e) = nav.get("errorText").and_then(Value::as_str) {
            return Err(ChromiumError::Protocol(format!(
                "navigate {}: {e}",
                visit.url
            )));
        }
        // Wait for the load event, then for the page's own readiness.
        while !self
            .events
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            let v = self.next_message(deadline, "Page.loadEventFired")?;
            self.events.push(v);
        }
        let mut ready = false;
        while Instant::now() < deadline {
            let r = self.call(
                "Runtime.evaluate",
                json!({ "expression": format!("Boolean({})", visit.ready), "returnByValue": true }),
                s,
                deadline,
            )?;
            if r["result"]["value"] == json!(true) {
                ready = true;
                break;
            }
            self.drain(Instant::now() + Duration::from_millis(200));
        }
        if !ready {
            return Err(ChromiumError::NotReady(format!(
                "`{}` stayed false on {}",
                visit.ready, visit.url
            )));
        }
        // Let late errors (a fetch that fails after the first render) arrive.
        self.drain((Instant::now() + Duration::from_millis(700)).min(deadline));
        let dom = self.call(
            "Runtime.evaluate",
            json!({ "expression": "document.documentElement.outerHTML", "returnByValue": true }),
            s,
            deadline,
        )?;
        let dom = dom["result"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png" }),
            s,
            deadline,
        )?;
        let screenshot = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| ChromiumError::Protocol(format!("screenshot: {e}")))?;
        let _ = self.call(
            "Target.closeTarget",
            json!({ "targetId": target_id }),
            None,
            deadline,
        );
        let (errors, console) = classify(&self.events);
        Ok(Page {
            dom,
            errors,
            console,
            screenshot,
        })
    }
}

/// The errors and the console messages among protocol events.
fn classify(events: &[Value]) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut console = Vec::new();
    for e in events {
        let p = &e["params"];
        match e["method"].as_str() {
            Some("Runtime.consoleAPICalled") => {
                let level = p["type"].as_str().unwrap_or("?");
                let text: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| match x.get("value") {
                                Some(Value::String(s)) => s.clone(),
                                Some(v) => v.to_string(),
                                None => x["description"].as_str().unwrap_or("?").to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let line = format!("console.{level}: {}", text.join(" "));
                if matches!(level, "error" | "assert") {
                    errors.push(line.clone());
                }
                console.push(line);
            }
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let what = d["exception"]["description"]
                    .as_str()
                    .or_else(|| d["text"].as_str())
                    .unwrap_or("?");
                errors.push(format!("uncaught exception: {what}"));
            }
            Some("Log.entryAdded") => {
                let entry = &p["entry"];
                if entry["level"] == "error" {
                    errors.push(format!(
                        "log error ({}): {} {}",
                        entry["source"].as_str().unwrap_or("?"),
                        entry["text"].as_str().unwrap_or("?"),
                        entry["url"].as_str().unwrap_or("")
                    ));
                }
            }
            _ => {}
        }
    }
    (errors, console)
}

/// What a screenshot shows, roughly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picture {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Distinct pixel values, counted up to 1024 (1: a blank, single-colour picture).
    pub colours: usize,
}

/// Decodes a PNG and counts its distinct pixel values (up to 1024).
pub fn inspect_png(bytes: &[u8]) -> Result<Picture, String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(|e| format!("not a PNG: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("bad PNG frame: {e}"))?;
    let pixel = info.color_type.samples() * usize::from(info.bit_depth as u8).div_ceil(8);
    let mut seen = std::collections::HashSet::new();
    for row in buf[..info.buffer_size()].chunks(info.line_size) {
        for px in row.chunks(pixel.max(1)) {
            seen.insert(px.to_vec());
            if seen.len() >= 1024 {
                break;
            }
        }
    }
    Ok(Picture {
        width: info.width,
        height: info.height,
        colours: seen.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_from_plain_messages() {
        let events: Vec<Value> = serde_json::from_str(
            r#"[
              {"method":"Runtime.consoleAPICalled","params":{"type":"log","args":[{"type":"string","value":"fine"}]}},
              {"method":"Runtime.consoleAPICalled","params":{"type":"error","args":[{"type":"string","value":"bad"}]}},
              {"method":"Runtime.exceptionThrown","params":{"exceptionDetails":{"text":"Uncaught","exception":{"description":"Error: boom"}}}},
              {"method":"Log.entryAdded","params":{"entry":{"source":"network","level":"error","text":"Failed to load resource","url":"https://cdn.example/x.js"}}},
              {"method":"Log.entryAdded","params":{"entry":{"source":"other","level":"verbose","text":"meh"}}}
            ]"#,
        )
        .expect("json");
        let (errors, console) = classify(&events);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("bad"));
        assert!(errors[1].contains("boom"));
        assert!(errors[2].contains("cdn.example"));
        assert_eq!(console.len(), 2);
    }
}
