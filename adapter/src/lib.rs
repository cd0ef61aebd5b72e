//! # sotto-adapter
//!
//! The adapter protocol through which the conformance runner drives one client implementation
//! through the model's traces against the real server, and the reference adapter: the Rust client
//! behind it.
//!
//! ```text
//!   sotto-conformance drive --adapter "<command>"             the adapter (any language)
//!     trace step: Action ──> requests (JSON lines, stdin) ──> its client ──mTLS/HTTPS──> server
//!     compare  <── answers (JSON lines, stdout): state, due <──┘
//!     the relay between front and broker: Receive, Drop, Duplicate, Reorder, Replay, Inject
//! ```
//!
//! - [`protocol`]: every request and answer (version 1), as serde types; the normative text with
//!   examples is `docs/adapter.md`, the JSON Schema `schema/sotto-adapter-v1.schema.json`.
//! - [`reference`](mod@reference): `sotto-client` behind the protocol. The binary `sotto-adapter` serves it over
//!   stdio ([`serve`]); `sotto check`'s in-process replay calls it directly.

pub mod protocol;
pub mod reference;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use protocol::{Failure, FailureKind, RequestLine, ResponseLine};

/// The JSON Schema of version 1 (every request and answer line), as committed.
pub const SCHEMA_V1: &str = include_str!("../schema/sotto-adapter-v1.schema.json");

/// Longest request line the reference adapter reads (a bundle or card is far below it).
pub const MAX_LINE: usize = 1 << 20;

/// Serves `adapter` over a line stream until `shutdown` or the end of the input: one answer line
/// per request line. A line that is not a request gets a `bad_request` answer (with id 0 when
/// not even the id could be read); the loop goes on.
pub async fn serve(
    adapter: &mut reference::Reference,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let (answer, last) = if line.len() > MAX_LINE {
            (
                refuse(
                    0,
                    format!("a line of {} bytes (at most {MAX_LINE})", line.len()),
                ),
                false,
            )
        } else {
            match serde_json::from_str::<RequestLine>(&line) {
                Ok(RequestLine { id, request }) => {
                    let last = request == protocol::Request::Shutdown;
                    let answer = match adapter.handle(request).await {
                        Ok(ok) => ResponseLine {
                            id,
                            ok: Some(ok),
                            error: None,
                        },
                        Err(e) => ResponseLine {
                            id,
                            ok: None,
                            error: Some(e),
                        },
                    };
                    (answer, last)
                }
                Err(e) => (refuse(line_id(&line), format!("not a request: {e}")), false),
            }
        };
        let mut text = serde_json::to_string(&answer).map_err(std::io::Error::other)?;
        text.push('\n');
        output.write_all(text.as_bytes()).await?;
        output.flush().await?;
        if last {
            return Ok(());
        }
    }
    adapter.shutdown().await;
    Ok(())
}

fn refuse(id: u64, message: String) -> ResponseLine {
    ResponseLine {
        id,
        ok: None,
        error: Some(Failure::new(FailureKind::BadRequest, message)),
    }
}

/// The `id` of a line that is JSON but not a valid request, so the answer can still name it.
fn line_id(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answers(input: &str) -> Vec<ResponseLine> {
        let mut adapter = reference::Reference::new();
        let mut out = Vec::new();
        serve(&mut adapter, input.as_bytes(), &mut out)
            .await
            .expect("serves");
        String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("an answer line"))
            .collect()
    }

    fn kind(a: &ResponseLine) -> Option<FailureKind> {
        a.error.as_ref().map(|e| e.kind)
    }

    #[tokio::test]
    async fn every_line_gets_one_answer_with_its_id_and_bad_lines_are_bad_requests() {
        let input = "{\"id\":1,\"op\":\"hello\",\"versions\":[1]}\n\
                     not json\n\
                     {\"id\":7,\"op\":\"fly\"}\n\
                     \n\
                     {\"id\":8,\"op\":\"state\",\"device\":\"Z\"}\n\
                     {\"id\":9,\"op\":\"hello\",\"versions\":[2]}\n\
                     {\"id\":10,\"op\":\"shutdown\"}\n\
                     {\"id\":11,\"op\":\"hello\",\"versions\":[1]}\n";
        let a = answers(input).await;
        assert_eq!(
            a.len(),
            6,
            "nothing after shutdown, nothing for the empty line: {a:?}"
        );
        assert_eq!(a[0].id, 1);
        assert_eq!(
            a[0].ok.as_ref().and_then(|v| v.get("version")),
            Some(&1.into())
        );
        assert_eq!((a[1].id, kind(&a[1])), (0, Some(FailureKind::BadRequest)));
        assert_eq!((a[2].id, kind(&a[2])), (7, Some(FailureKind::BadRequest)));
        assert_eq!((a[3].id, kind(&a[3])), (8, Some(FailureKind::BadRequest)));
        assert_eq!((a[4].id, kind(&a[4])), (9, Some(FailureKind::Unsupported)));
        assert_eq!((a[5].id, a[5].error.is_none()), (10, true));
    }

    #[tokio::test]
    async fn a_line_longer_than_the_bound_is_refused() {
        let long = format!(
            "{{\"id\":3,\"op\":\"card\",\"device\":\"{}\"}}\n",
            "A".repeat(MAX_LINE)
        );
        let a = answers(&long).await;
        assert_eq!((a[0].id, kind(&a[0])), (0, Some(FailureKind::BadRequest)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the lines, the loop answers each non-empty one exactly once and never panics.
        #[test]
        fn any_lines_get_one_answer_each(lines in proptest::collection::vec(
            proptest::prop_oneof![
                "[ -~]{0,80}",
                r#"\{"id":[0-9]{1,3},"op":"(hello|card|state|send|due|fly)"[ -~]{0,40}\}"#,
            ],
            0..8,
        )) {
            let lines: Vec<String> = lines.into_iter().filter(|l| !l.contains("shutdown")).collect();
            let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let a = runtime.block_on(answers(&input));
            let expected = lines.iter().filter(|l| !l.trim().is_empty()).count();
            proptest::prop_assert_eq!(a.len(), expected);
        }
    }
}
