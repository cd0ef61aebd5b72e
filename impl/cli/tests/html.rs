//! `sotto check --html` in headless Chromium: the page the built binary writes (a real report:
//! the model and the vectors of a short run, real counterexamples of every broken variant) must
//! render without a console error, show the requirement rows and the charts, and give a
//! screenshot that is not blank. A control page with a deliberate `console.error`, an uncaught
//! exception and a load from the internet proves the same check fails; a blank page proves the
//! screenshot check does.
//!
//! Skipped (with a line on stderr) where Chromium is not installed, unless
//! `SOTTO_REQUIRE_CHROMIUM=1` (CI), which makes them fail. Browser: `sotto_testkit::chromium`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Guard, SOTTO};
use sotto_testkit::chromium::{self, Browser, Page, Visit};

/// Upper bound of `sotto check` on the small configuration with the counterexamples.
const CHECK_WAIT: Duration = Duration::from_secs(600);
/// Upper bound of one page visit.
const VISIT_WAIT: Duration = Duration::from_secs(60);
const WINDOW: (u32, u32) = (1280, 2000);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Loads `url` in a fresh headless Chromium, waiting for `ready`.
fn visit(chromium: &Path, url: &str, ready: &str) -> Page {
    let mut browser = Browser::start(chromium, WINDOW).expect("start chromium");
    match browser.visit(&Visit {
        url,
        ready,
        window: WINDOW,
        wait: VISIT_WAIT,
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}\nchromium stderr:\n{}", browser.stderr()),
    }
}

/// Runs the built binary with `args` in the repository, bounded by [`CHECK_WAIT`].
fn sotto_check(args: &[&str]) -> std::process::ExitStatus {
    let child = Command::new(SOTTO)
        .current_dir(repo())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sotto check");
    let mut guard = Guard::new(child);
    let deadline = Instant::now() + CHECK_WAIT;
    loop {
        if let Some(status) = guard.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "sotto check took over {CHECK_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_html_report_renders_in_chromium_with_its_charts_and_no_console_error() {
    let Some(chromium) = chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("report.html");
    let page_arg = page.to_str().expect("utf-8 path");
    // A short real run: the vectors and the small model exhaustively; the replay and the wiretap
    // skipped (so the report itself says FAIL/SKIPPED and the command exits 1).
    let status = sotto_check(&[
        "check",
        "--model-config",
        "small",
        "--counterexamples-config",
        "small",
        "--skip",
        "replay",
        "--skip",
        "wiretap",
        "--html",
        page_arg,
    ]);
    assert!(!status.success(), "skipped sources never pass");
    let html = std::fs::read_to_string(&page).expect("the page was written");
    let counterexamples = html.matches("<section class=\"counterexample\"").count();
    assert!(counterexamples >= 1, "no counterexample on the page");

    let shown = visit(
        &chromium,
        &url(&page),
        "document.querySelectorAll('tr.req').length === 8",
    );
    assert!(
        shown.errors.is_empty(),
        "console errors: {:#?}",
        shown.errors
    );
    assert!(
        shown.console.is_empty(),
        "the page has no script: {:?}",
        shown.console
    );
    for i in 1..=8 {
        assert!(
            shown.dom.contains(&format!("data-req=\"Req{i}\"")),
            "Req{i} row missing from the DOM"
        );
    }
    assert_eq!(
        shown.dom.matches("<svg").count(),
        counterexamples,
        "one chart per counterexample"
    );
    assert!(shown.dom.contains("data-step=\"1\""));
    assert!(
        shown.dom.contains("class=\"step attacker\""),
        "attacker steps highlighted"
    );
    let pic = chromium::inspect_png(&shown.screenshot).expect("a PNG");
    assert_eq!((pic.width, pic.height), WINDOW);
    assert!(pic.colours > 16, "a blank screenshot: {pic:?}");
    // Keep the picture for a human when asked to.
    if let Some(out) = std::env::var_os("SOTTO_SCREENSHOT_DIR") {
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(Path::new(&out).join("report.png"), &shown.screenshot);
        let _ = std::fs::copy(&page, Path::new(&out).join("report.html"));
    }
}

#[test]
fn the_console_check_flags_a_deliberate_error_and_the_picture_check_a_blank_page() {
    let Some(chromium) = chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><body><p>control</p>\
         <script src=\"https://cdn.example.com/lib.js\"></script>\
         <script>console.log('only a log'); console.error('deliberate console.error');</script>\
         <script>document.body.dataset.ran = 'yes'; throw new Error('deliberate throw');</script>\
         </body></html>",
    )
    .expect("write");
    let shown = visit(&chromium, &url(&bad), "document.body.dataset.ran === 'yes'");
    let all = shown.errors.join("\n");
    assert!(all.contains("deliberate console.error"), "{all}");
    assert!(all.contains("deliberate throw"), "{all}");
    assert!(
        all.contains("cdn.example.com"),
        "a load from the internet: {all}"
    );
    assert!(!all.contains("only a log"), "a log is not an error: {all}");
    assert_eq!(shown.errors.len(), 3, "{all}");

    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").expect("write");
    let shown = visit(&chromium, &url(&blank), "true");
    assert!(shown.errors.is_empty(), "{:?}", shown.errors);
    let pic = chromium::inspect_png(&shown.screenshot).expect("a PNG");
    assert_eq!(pic.colours, 1, "a blank page is one colour: {pic:?}");
}
