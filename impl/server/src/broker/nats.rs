//! NATS (2.9 or later) as the broker behind the front: a cluster the operator runs, each node with
//! JetStream and its MQTT listener, and one NATS user for the fronts ([`NatsCluster`]). The
//! front reaches it through the nodes' MQTT ports ([`InternalAddr::Nodes`], failing over between
//! them); the engine keeps the persistent sessions and the queued envelopes replicated (R3), so a
//! node may die and the inboxes survive, and any number of fronts and services can share it.
//!
//! What the engine holds is read from the engine itself, over the NATS client protocol on a
//! node's client port ([`NatsCluster::held`], [`NatsCluster::inbox_count`]): a JetStream API
//! request `$JS.API.STREAM.INFO.$MQTT_msgs`, the stream NATS keeps MQTT QoS 1 messages in
//! (interest retention: a message goes once every session it was queued for has acknowledged
//! it). The frames are parsed by `sotto_wire::nats`.
//!
//! The service does not start, stop or restart the engine ([`super::BrokerError::NotManaged`]);
//! `deploy/cluster/` starts one on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sotto_wire::nats::{self as frames, Frame, NatsFrameError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BrokerError;
use super::upstream::{InternalAddr, NODE_CONNECT_TIMEOUT, Upstream};

/// The JetStream stream in which NATS keeps MQTT QoS 1 messages.
pub const MESSAGE_STREAM: &str = "$MQTT_msgs";

/// How long a JetStream API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`NatsCluster::wait_ready`] waits for a node to accept the front's CONNECT (a fresh
/// cluster elects its JetStream leaders first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A NATS cluster the service runs on: where its nodes listen and the fronts' credentials.
#[derive(Clone)]
pub struct NatsCluster {
    mqtt: Arc<[SocketAddr]>,
    client: Arc<[SocketAddr]>,
    user: Arc<str>,
    password: Arc<str>,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCluster")
            .field("mqtt", &self.mqtt)
            .field("client", &self.client)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why the engine's state could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// No node's client port answered.
    #[error("no NATS node answered: {0}")]
    Io(#[from] std::io::Error),
    /// The node sent bytes that are not NATS frames.
    #[error("NATS protocol: {0}")]
    Frame(#[from] NatsFrameError),
    /// The node refused (`-ERR`, e.g. a wrong user or password).
    #[error("the NATS node refused: {0}")]
    Refused(String),
    /// No answer in time (JetStream without a leader, during an election).
    #[error("the JetStream API did not answer in time")]
    Timeout,
    /// The answer is not a stream info, or reports a JetStream error.
    #[error("unexpected JetStream answer: {0}")]
    Answer(String),
}

impl NatsError {
    /// Whether asking again later may succeed (a node down, an election), as opposed to a
    /// configuration fault (credentials) or a broken engine.
    pub fn is_retryable(&self) -> bool {
        matches!(self, NatsError::Io(_) | NatsError::Timeout)
    }
}

/// What the engine holds in the MQTT message stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHoldings {
    /// Messages held (queued or awaiting a PUBACK).
    pub messages: u64,
    /// Their bytes as JetStream counts them (payload, subject and headers).
    pub bytes: u64,
    /// The first and last sequence numbers in the stream (`first_seq > last_seq` when empty).
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
    /// Messages per subject, when asked for with a filter.
    pub subjects: BTreeMap<String, u64>,
}

impl NatsCluster {
    /// A cluster whose nodes listen for MQTT on `mqtt` and for NATS clients on `client`, with
    /// the fronts' `user` and `password` (one NATS user, in the engine's `authorization` block).
    pub fn new(
        mqtt: Vec<SocketAddr>,
        client: Vec<SocketAddr>,
        user: &str,
        password: &str,
    ) -> Result<NatsCluster, BrokerError> {
        if mqtt.is_empty() {
            return Err(BrokerError::NoNodes);
        }
        Ok(NatsCluster {
            mqtt: mqtt.into(),
            client: client.into(),
            user: user.into(),
            password: password.into(),
        })
    }

    /// The nodes' MQTT listeners.
    pub fn mqtt_nodes(&self) -> &[SocketAddr] {
        &self.mqtt
    }

    /// Where the front connects, and as whom.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            addr: InternalAddr::Nodes(self.mqtt.clone()),
            secret: self.password.clone(),
            user: Some(self.user.clone()),
            engine: Some(self.clone()),
        }
    }

    /// Waits until a node accepts the front's CONNECT (at most [`READY_TIMEOUT`]).
    pub async fn wait_ready(&self) -> Result<(), BrokerError> {
        let upstream = self.upstream();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let probe = super::front::publisher_id()?;
            match super::front::connect_as(&upstream, &probe, true).await {
                Ok((_, mut wr, _)) => {
                    let _ = wr.shutdown().await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    tracing::warn!(error = %e, "NATS did not accept the front's CONNECT");
                    return Err(BrokerError::NotReady(upstream.addr));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// What the MQTT message stream holds in all.
    pub async fn held(&self) -> Result<StreamHoldings, NatsError> {
        let mut conn = self.connect().await?;
        conn.stream_info(None).await
    }

    /// The envelopes the engine holds for `user`'s inbox (queued or awaiting the PUBACK).
    pub async fn inbox_count(&self, user: &str) -> Result<u64, NatsError> {
        let subject = inbox_subject(user);
        let mut conn = self.connect().await?;
        let held = conn.stream_info(Some(&subject)).await?;
        Ok(held.subjects.get(&subject).copied().unwrap_or(0))
    }

    /// A copy of every payload the MQTT message stream holds (read one by one with
    /// `$JS.API.STREAM.MSG.GET`, at most [`MAX_READ`]): the broker-side Req6 check looks for
    /// acknowledged envelopes among them.
    pub async fn held_payloads(&self) -> Result<Vec<Vec<u8>>, NatsError> {
        let mut conn = self.connect().await?;
        let held = conn.stream_info(None).await?;
        if held.messages == 0 {
            return Ok(Vec::new());
        }
        if held.last_seq.saturating_sub(held.first_seq) >= MAX_READ {
            return Err(NatsError::Answer(format!(
                "{} sequence numbers to read, more than {MAX_READ}",
                held.last_seq - held.first_seq + 1
            )));
        }
        let mut out = Vec::new();
        for seq in held.first_seq..=held.last_seq {
            let answer = conn
                .request(
                    &format!("$JS.API.STREAM.MSG.GET.{MESSAGE_STREAM}"),
                    format!("{{\"seq\":{seq}}}").as_bytes(),
                )
                .await?;
            // Deleted since (acknowledged meanwhile, or a gap): JetStream's "no message found".
            if answer
                .pointer("/error/err_code")
                .and_then(serde_json::Value::as_u64)
                == Some(NO_MESSAGE_FOUND)
            {
                continue;
            }
            let data = answer
                .pointer("/message/data")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| answer_error(&answer, "no `message.data`"))?;
            out.push(
                base64_decode(data)
                    .ok_or_else(|| NatsError::Answer("`message.data` is not base64".into()))?,
            );
        }
        Ok(out)
    }

    /// A connection to the first client port that answers.
    async fn connect(&self) -> Result<ApiConn, NatsError> {
        let mut last = NatsError::Io(std::io::Error::other("no NATS client port configured"));
        for node in self.client.iter() {
            match ApiConn::open(*node, &self.user, &self.password).await {
                Ok(conn) => return Ok(conn),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// At most this many stream sequence numbers are read by [`NatsCluster::held_payloads`].
pub const MAX_READ: u64 = 100_000;

/// JetStream's error code for "no message found".
const NO_MESSAGE_FOUND: u64 = 10037;

/// One connection to a node's client port, asking the JetStream API one request at a time.
struct ApiConn {
    tcp: TcpStream,
    buf: BytesMut,
    reply: String,
}

impl ApiConn {
    async fn open(node: SocketAddr, user: &str, password: &str) -> Result<ApiConn, NatsError> {
        let mut tcp = tokio::time::timeout(NODE_CONNECT_TIMEOUT, TcpStream::connect(node))
            .await
            .map_err(|_| NatsError::Timeout)??;
        let reply = format!(
            "_INBOX.sotto.{}",
            super::random_hex::<8>()
                .map_err(|_| NatsError::Io(std::io::Error::other("random source failed")))?
        );
        let mut hello = frames::encode_connect(user, password);
        hello.extend(frames::encode_sub(&reply, 1));
        // The PONG says the CONNECT and the SUB were taken (or an -ERR comes first).
        hello.extend_from_slice(b"PING\r\n");
        tcp.write_all(&hello).await?;
        let mut conn = ApiConn {
            tcp,
            buf: BytesMut::with_capacity(4096),
            reply,
        };
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            loop {
                match conn.next_frame().await? {
                    Frame::Pong => return Ok(()),
                    Frame::Err(e) => return Err(NatsError::Refused(e)),
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| NatsError::Timeout)??;
        Ok(conn)
    }

    /// The next frame, answering PINGs on the way.
    async fn next_frame(&mut self) -> Result<Frame, NatsError> {
        loop {
            if let Some((frame, used)) = frames::parse_frame(&self.buf)? {
                let _ = self.buf.split_to(used);
                if frame == Frame::Ping {
                    self.tcp.write_all(b"PONG\r\n").await?;
                    continue;
                }
                return Ok(frame);
            }
            if self.tcp.read_buf(&mut self.buf).await? == 0 {
                return Err(NatsError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the NATS node closed the connection",
                )));
            }
        }
    }

    /// Publishes `body` to `subject` with this connection's reply subject and reads the answer
    /// as JSON.
    async fn request(
        &mut self,
        subject: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, NatsError> {
        let request = frames::encode_pub(subject, &self.reply, body);
        self.tcp.write_all(&request).await?;
        let payload = tokio::time::timeout(REQUEST_TIMEOUT, async {
            loop {
                match self.next_frame().await? {
                    Frame::Msg {
                        subject, payload, ..
                    } if subject == self.reply => return Ok(payload),
                    Frame::Err(e) => return Err(NatsError::Refused(e)),
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| NatsError::Timeout)??;
        serde_json::from_slice(&payload).map_err(|e| NatsError::Answer(format!("not JSON: {e}")))
    }

    /// `$JS.API.STREAM.INFO.$MQTT_msgs`, with `subjects_filter` if given.
    async fn stream_info(&mut self, filter: Option<&str>) -> Result<StreamHoldings, NatsError> {
        let body = match filter {
            Some(subject) => format!("{{\"subjects_filter\":\"{subject}\"}}"),
            None => String::new(),
        };
        let answer = self
            .request(
                &format!("$JS.API.STREAM.INFO.{MESSAGE_STREAM}"),
                body.as_bytes(),
            )
            .await?;
        parse_stream_info(&answer)
    }
}

fn answer_error(answer: &serde_json::Value, what: &str) -> NatsError {
    match answer.get("error") {
        Some(err) => NatsError::Answer(err.to_string().chars().take(200).collect()),
        None => NatsError::Answer(what.to_owned()),
    }
}

/// Standard base64 (with padding), as JetStream sends message data; `None` if it is not.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 != 0 || text.len() - bytes.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        if chunk.len() == 1 {
            return None;
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    Some(out)
}

/// Whether the `nats-server` binary is installed here (the tests and `deploy/cluster/` start
/// clusters with it; a service only needs the nodes' addresses).
pub fn nats_server_available() -> bool {
    std::process::Command::new("nats-server")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The subject of `user`'s inbox in the MQTT message stream (MQTT topic `i/<user>` is NATS
/// subject `i.<user>`, stored under `$MQTT.msgs.`).
pub fn inbox_subject(user: &str) -> String {
    format!(
        "$MQTT.msgs.{}{user}",
        sotto_wire::filter::INBOX_PREFIX.replace('/', ".")
    )
}

/// Reads a `STREAM.INFO` answer.
fn parse_stream_info(v: &serde_json::Value) -> Result<StreamHoldings, NatsError> {
    if v.get("error").is_some() {
        return Err(answer_error(v, "an error"));
    }
    let state = v
        .get("state")
        .ok_or_else(|| NatsError::Answer("no `state`".into()))?;
    let number = |key: &str| {
        state
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| NatsError::Answer(format!("no `state.{key}`")))
    };
    let subjects = state
        .get("subjects")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(StreamHoldings {
        messages: number("messages")?,
        bytes: number("bytes")?,
        first_seq: number("first_seq")?,
        last_seq: number("last_seq")?,
        subjects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_info_answer_is_read_and_an_error_answer_refused() {
        let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        let held = parse_stream_info(&json(
            r#"{"type":"io.nats.jetstream.api.v1.stream_info_response","state":{"messages":5,"bytes":900,"first_seq":3,"last_seq":7,"subjects":{"$MQTT.msgs.i.AAAA":5}}}"#,
        ))
        .unwrap();
        assert_eq!(held.messages, 5);
        assert_eq!(held.subjects.get("$MQTT.msgs.i.AAAA"), Some(&5));
        assert!(matches!(
            parse_stream_info(&json(
                r#"{"error":{"code":404,"description":"stream not found"}}"#
            )),
            Err(NatsError::Answer(_))
        ));
        assert!(matches!(
            parse_stream_info(&json(r#"{"state":{"messages":1}}"#)),
            Err(NatsError::Answer(_))
        ));
        assert_eq!(inbox_subject("ABC"), "$MQTT.msgs.i.ABC");
    }

    #[test]
    fn base64_is_read_as_jetstream_writes_it() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(base64_decode("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        for bad in ["aGk", "a===", "a*==", "aGVsbG8=x"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
