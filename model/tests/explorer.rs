//! The stateright Explorer (`sotto-model explore`) in headless Chromium: its page must load
//! without a console error, with nothing from the internet (its UI, Knockout included, is served
//! by the binary itself; Chromium here resolves loopback only), and its scripts must show the
//! model's states: the status, and the initial state's next actions.
//!
//! Skipped (with a line on stderr) where Chromium is not installed, unless
//! `SOTTO_REQUIRE_CHROMIUM=1` (CI), which makes it fail. Browser: `sotto_testkit::chromium`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sotto_testkit::chromium::{self, Browser, Visit};

/// Upper bound of the Explorer's start.
const START_WAIT: Duration = Duration::from_secs(30);
/// Upper bound of the page visit.
const VISIT_WAIT: Duration = Duration::from_secs(60);
const WINDOW: (u32, u32) = (1280, 900);

/// The Explorer, killed on drop.
struct Explorer(Child);

impl Drop for Explorer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_explorer_shows_the_model_in_chromium_without_console_errors() {
    let Some(chromium) = chromium::find() else {
        return;
    };
    let addr = sotto_testkit::free_loopback();
    let explorer = Explorer(
        Command::new(env!("CARGO_BIN_EXE_sotto-model"))
            .args(["explore", "--config", "small", "--threads", "1", "--addr"])
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sotto-model explore"),
    );
    assert!(
        sotto_testkit::wait_for_port(addr, START_WAIT),
        "the Explorer did not listen on {addr}"
    );
    let mut browser = Browser::start(&chromium, WINDOW).expect("start chromium");
    // `#/steps/0`: the initial state selected. Ready once Knockout rendered it (fetched from
    // `/.states/0`) and its next actions, the devices' `Signup`s.
    let ready = "[...document.querySelectorAll('a.font-code')].some(a => a.textContent.includes('Signup')) \
                 && document.body.innerText.includes('signed_up')";
    let page = match browser.visit(&Visit {
        url: &format!("http://{addr}/#/steps/0"),
        ready,
        window: WINDOW,
        wait: VISIT_WAIT,
    }) {
        Ok(p) => p,
        Err(e) => panic!("{e}\nchromium stderr:\n{}", browser.stderr()),
    };
    drop(browser);
    drop(explorer);
    // Chromium asks every site for /favicon.ico by itself; the Explorer has none and answers
    // 404, which the protocol reports as a failed load. The page never asked for it: tolerated,
    // and only that one.
    let (favicon, errors): (Vec<String>, Vec<String>) = page
        .errors
        .iter()
        .cloned()
        .partition(|e| e.contains("404") && e.ends_with("/favicon.ico"));
    if !favicon.is_empty() {
        eprintln!("tolerated (the browser's own request): {favicon:?}");
    }
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert!(page.dom.contains("Stateright Explorer"));
    assert!(
        page.dom.contains("SottoModel"),
        "the status names the model"
    );
    assert!(page.dom.contains("Signup"), "the next actions");
    assert!(page.dom.contains("signed_up"), "the current state");
    // The status came from /.status and the state from /.states: the placeholders are gone.
    assert!(
        !page.dom.contains("UNIQUE STATE COUNT"),
        "status not rendered"
    );
    let pic = chromium::inspect_png(&page.screenshot).expect("a PNG");
    assert_eq!((pic.width, pic.height), WINDOW);
    assert!(pic.colours > 16, "a blank screenshot: {pic:?}");
    if let Some(out) = std::env::var_os("SOTTO_SCREENSHOT_DIR") {
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(
            std::path::Path::new(&out).join("explorer.png"),
            &page.screenshot,
        );
    }
}
