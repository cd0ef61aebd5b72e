//! The frames of the NATS client protocol (NATS 2.x, text control lines and sized payloads) that
//! the service reads from a NATS cluster it runs on: [`parse_frame`] takes one frame off the front
//! of a buffer. The service uses it for one thing: asking the engine's JetStream API what it holds
//! for an inbox (BROKER-5 across fronts, the Req6 check on the cluster's own state); the requests
//! it writes are [`encode_connect`], [`encode_sub`] and [`encode_pub`].
//!
//! The bytes come from the network: every malformed frame is a typed [`NatsFrameError`], and a
//! frame is never larger than [`MAX_CONTROL_LINE`] plus [`MAX_PAYLOAD`].

/// The longest control line accepted (NATS's own default `max_control_line` is 4,096).
pub const MAX_CONTROL_LINE: usize = 4096;

/// The largest payload accepted (NATS's default `max_payload` is 1 MiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// One frame from a NATS server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `INFO {json}`: the server's greeting (its JSON is not needed and not kept).
    Info,
    /// `MSG <subject> <sid> [reply-to] <#bytes>` and its payload.
    Msg {
        /// The subject the message was published to.
        subject: String,
        /// The subscription it arrived on.
        sid: String,
        /// Where a reply goes, if the publisher asked for one.
        reply: Option<String>,
        /// The payload.
        payload: Vec<u8>,
    },
    /// `PING`: the server wants a `PONG`.
    Ping,
    /// `PONG`: the answer to the client's `PING`.
    Pong,
    /// `+OK` (verbose mode).
    Ok,
    /// `-ERR '<message>'`: a protocol or authorization error.
    Err(String),
}

/// Why bytes from a NATS server are not a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NatsFrameError {
    /// No CRLF within [`MAX_CONTROL_LINE`] bytes.
    #[error("a NATS control line longer than {MAX_CONTROL_LINE} bytes")]
    LineTooLong,
    /// The control line is not UTF-8.
    #[error("a NATS control line that is not UTF-8")]
    NotUtf8,
    /// An operation this client does not know (`HMSG` included: it never asks for headers).
    #[error("an unknown NATS operation")]
    UnknownOp,
    /// A `MSG` line without 3 or 4 fields, or whose size is not a number.
    #[error("a malformed NATS MSG line")]
    BadMsgLine,
    /// A payload larger than [`MAX_PAYLOAD`].
    #[error("a NATS payload larger than {MAX_PAYLOAD} bytes")]
    PayloadTooLarge,
    /// A payload not followed by CRLF.
    #[error("a NATS payload not followed by CRLF")]
    MissingCrlf,
}

/// Takes one frame off the front of `buf`: `Ok(None)` while the frame is incomplete, otherwise
/// the frame and how many bytes it took.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, NatsFrameError> {
    let window = &buf[..buf.len().min(MAX_CONTROL_LINE + 2)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if window.len() > MAX_CONTROL_LINE {
            Err(NatsFrameError::LineTooLong)
        } else {
            Ok(None)
        };
    };
    if end > MAX_CONTROL_LINE {
        return Err(NatsFrameError::LineTooLong);
    }
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| NatsFrameError::NotUtf8)?;
    let after_line = end + 2;
    let (op, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
    let simple = |frame| Ok(Some((frame, after_line)));
    match op.to_ascii_uppercase().as_str() {
        "INFO" => simple(Frame::Info),
        "PING" => simple(Frame::Ping),
        "PONG" => simple(Frame::Pong),
        "+OK" => simple(Frame::Ok),
        "-ERR" => simple(Frame::Err(
            rest.trim().trim_matches('\'').chars().take(256).collect(),
        )),
        "MSG" => {
            let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
            let (subject, sid, reply, size) = match fields.as_slice() {
                [subject, sid, size] => (subject, sid, None, size),
                [subject, sid, reply, size] => (subject, sid, Some(reply), size),
                _ => return Err(NatsFrameError::BadMsgLine),
            };
            let size: usize = size.parse().map_err(|_| NatsFrameError::BadMsgLine)?;
            if size > MAX_PAYLOAD {
                return Err(NatsFrameError::PayloadTooLarge);
            }
            let total = after_line + size + 2;
            if buf.len() < total {
                return Ok(None);
            }
            if &buf[after_line + size..total] != b"\r\n" {
                return Err(NatsFrameError::MissingCrlf);
            }
            Ok(Some((
                Frame::Msg {
                    subject: (*subject).to_owned(),
                    sid: (*sid).to_owned(),
                    reply: reply.map(|r| (*r).to_owned()),
                    payload: buf[after_line..after_line + size].to_vec(),
                },
                total,
            )))
        }
        _ => Err(NatsFrameError::UnknownOp),
    }
}

/// `CONNECT` with a user and password, not verbose, no headers (so no `HMSG` comes back).
/// `user` and `password` are JSON-escaped.
pub fn encode_connect(user: &str, password: &str) -> Vec<u8> {
    format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":false,\"lang\":\"rust\",\"version\":\"sotto\",\"protocol\":1,\"user\":{},\"pass\":{}}}\r\n",
        json_string(user),
        json_string(password)
    )
    .into_bytes()
}

/// `SUB <subject> <sid>`.
pub fn encode_sub(subject: &str, sid: u32) -> Vec<u8> {
    format!("SUB {subject} {sid}\r\n").into_bytes()
}

/// `PUB <subject> <reply-to> <#bytes>` and the payload.
pub fn encode_pub(subject: &str, reply: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("PUB {subject} {reply} {}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_are_taken_one_at_a_time() {
        let buf = b"INFO {\"server_id\":\"x\"}\r\nPING\r\nMSG _INBOX.a 1 5\r\nhello\r\nMSG s 2 r 0\r\n\r\n-ERR 'Authorization Violation'\r\n";
        let mut at = 0;
        let mut frames = Vec::new();
        while let Some((frame, used)) = parse_frame(&buf[at..]).unwrap() {
            frames.push(frame);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(
            frames,
            vec![
                Frame::Info,
                Frame::Ping,
                Frame::Msg {
                    subject: "_INBOX.a".into(),
                    sid: "1".into(),
                    reply: None,
                    payload: b"hello".to_vec()
                },
                Frame::Msg {
                    subject: "s".into(),
                    sid: "2".into(),
                    reply: Some("r".into()),
                    payload: vec![]
                },
                Frame::Err("Authorization Violation".into()),
            ]
        );
    }

    #[test]
    fn an_incomplete_frame_waits_and_a_bad_one_is_refused() {
        assert_eq!(parse_frame(b"MSG a 1 5\r\nhel"), Ok(None));
        assert_eq!(parse_frame(b"PIN"), Ok(None));
        assert_eq!(
            parse_frame(b"MSG a 1 5\r\nhelloXX"),
            Err(NatsFrameError::MissingCrlf)
        );
        assert_eq!(
            parse_frame(b"MSG a 1 x\r\n"),
            Err(NatsFrameError::BadMsgLine)
        );
        assert_eq!(parse_frame(b"MSG a\r\n"), Err(NatsFrameError::BadMsgLine));
        assert_eq!(
            parse_frame(b"MSG a 1 99999999999\r\n"),
            Err(NatsFrameError::PayloadTooLarge)
        );
        assert_eq!(
            parse_frame(b"HMSG a 1 2 3\r\n"),
            Err(NatsFrameError::UnknownOp)
        );
        assert_eq!(
            parse_frame(&vec![b'A'; MAX_CONTROL_LINE + 3]),
            Err(NatsFrameError::LineTooLong)
        );
        assert_eq!(parse_frame(b"\xff\xfe\r\n"), Err(NatsFrameError::NotUtf8));
    }

    #[test]
    fn requests_are_written_as_nats_reads_them() {
        assert_eq!(
            encode_pub("$JS.API.STREAM.INFO.$MQTT_msgs", "_INBOX.x", b"{}"),
            b"PUB $JS.API.STREAM.INFO.$MQTT_msgs _INBOX.x 2\r\n{}\r\n"
        );
        assert_eq!(encode_sub("_INBOX.x", 1), b"SUB _INBOX.x 1\r\n");
        let connect = String::from_utf8(encode_connect("sotto", "p\"w\\")).unwrap();
        assert!(connect.ends_with("\"user\":\"sotto\",\"pass\":\"p\\\"w\\\\\"}\r\n"));
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_frame_an_error_or_a_wait(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some((_, used))) = parse_frame(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }
    }
}
