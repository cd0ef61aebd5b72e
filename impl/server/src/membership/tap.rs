//! The membership wiretap ([`super::MembershipHandle::wiretap`]): every HTTP request and response
//! the service handles, in plaintext (after TLS), for the conformance wiretap (Req8) and tests.
//!
//! ```text
//!  TLS --> hyper --> [tap: buffer the request body, record] --> router --> stamp
//!                                   [tap: buffer the response body, record] <--+
//! ```
//!
//! With no tap attached a request costs one uncontended lock to find that out; nothing is
//! buffered. With a tap, request bodies are buffered up to [`TAP_BODY_LIMIT`] (the handlers'
//! limit is far lower, so what they see and answer is unchanged: an oversize body is still
//! refused with 413) and response bodies (built in memory by the handlers) are buffered whole.

use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, HttpBody};
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::error::ApiError;

/// Most request body bytes the tap buffers (and passes on); a declared larger body is passed on
/// unread and recorded as empty.
pub const TAP_BODY_LIMIT: usize = 64 * 1024 + 1;

/// One HTTP message the membership service handled (see [`super::MembershipHandle::wiretap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpTapRecord {
    /// A request, as received (after TLS).
    Request {
        /// Exchange number (per service, from 1): the response carries the same.
        exchange: u64,
        /// `GET`, `POST`, ...
        method: String,
        /// The request target: path and query.
        path: String,
        /// The body (up to [`TAP_BODY_LIMIT`] bytes).
        body: Bytes,
    },
    /// The response to the request with the same exchange number, as sent (before TLS).
    Response {
        /// Exchange number.
        exchange: u64,
        /// HTTP status code.
        status: u16,
        /// The whole body.
        body: Bytes,
    },
}

/// Where the current tap is (shared by the handle and every connection).
#[derive(Debug, Default)]
pub(crate) struct TapSlot {
    sender: Mutex<Option<mpsc::UnboundedSender<HttpTapRecord>>>,
    next: AtomicU64,
}

impl TapSlot {
    /// Attaches a new tap, replacing any previous one.
    pub(crate) fn attach(&self) -> mpsc::UnboundedReceiver<HttpTapRecord> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut slot) = self.sender.lock() {
            *slot = Some(tx);
        }
        rx
    }

    /// The tap for one exchange, if one is attached (and its receiver still open).
    pub(crate) fn active(&self) -> Option<Tap> {
        let mut slot = self.sender.lock().ok()?;
        let tx = slot.as_ref()?;
        if tx.is_closed() {
            *slot = None;
            return None;
        }
        let tx = tx.clone();
        let exchange = self.next.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        Some(Tap { tx, exchange })
    }
}

/// The tap of one exchange.
#[derive(Debug)]
pub(crate) struct Tap {
    tx: mpsc::UnboundedSender<HttpTapRecord>,
    exchange: u64,
}

impl Tap {
    /// Buffers and records the request; returns it with the same body bytes.
    pub(crate) async fn request(&self, req: Request<Body>) -> Request<Body> {
        let (parts, body) = req.into_parts();
        let method = parts.method.as_str().to_owned();
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let (recorded, body) = if body.size_hint().lower() > TAP_BODY_LIMIT as u64 {
            (Bytes::new(), body)
        } else {
            let bytes = buffer(body, TAP_BODY_LIMIT).await;
            (bytes.clone(), Body::from(bytes))
        };
        let _ = self.tx.send(HttpTapRecord::Request {
            exchange: self.exchange,
            method,
            path,
            body: recorded,
        });
        Request::from_parts(parts, body)
    }

    /// Buffers and records the response; returns it with the same body bytes.
    pub(crate) async fn response(&self, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let (status, bytes, response) = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(bytes) => (
                parts.status.as_u16(),
                bytes.clone(),
                Response::from_parts(parts, Body::from(bytes)),
            ),
            // Not expected: the handlers build their bodies in memory.
            Err(_) => {
                let response = ApiError::internal().into_response();
                (response.status().as_u16(), Bytes::new(), response)
            }
        };
        let _ = self.tx.send(HttpTapRecord::Response {
            exchange: self.exchange,
            status,
            body: bytes,
        });
        response
    }
}

/// Reads a body's data frames, keeping at most `limit` bytes (the rest is not read); a body error
/// ends it where it is (the handler then sees a shorter body).
async fn buffer(mut body: Body, limit: usize) -> Bytes {
    let mut buf = BytesMut::new();
    while buf.len() < limit {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit.saturating_sub(buf.len());
                    buf.extend_from_slice(data.get(..room).unwrap_or(&data));
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    buf.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use super::HttpTapRecord;
    use crate::ca::Pki;
    use crate::membership::{Membership, MembershipConfig};

    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<HttpTapRecord>) -> HttpTapRecord {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a record within the wait")
            .expect("tap open")
    }

    #[tokio::test]
    async fn wiretap_records_every_request_and_response_in_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Arc::new(Pki::load_or_create(dir.path()).unwrap());
        let handle = Membership::start(
            MembershipConfig {
                data_dir: dir.path().to_path_buf(),
                directory: crate::membership::DirectoryBackend::Sqlite,
                listen: "127.0.0.1:0".parse().unwrap(),
                difficulty: 0,
                broker_addr: "localhost:8883".to_owned(),
                admission: crate::admission::AdmissionLimits::MEMBERSHIP,
                quotas: crate::membership::quota::QuotaLimits::DEFAULT,
                revocations: crate::revocation::Revocations::new(),
                departures: crate::departure::Departures::new(),
                metrics: Arc::new(crate::metrics::Metrics::new()),
            },
            pki.clone(),
        )
        .await
        .unwrap();
        let tls = sotto_client::tls::client_config(pki.ca_pem(), None).unwrap();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .build()
            .unwrap();

        // Before the tap: nothing is recorded.
        let url = |p: &str| format!("{}{p}", handle.url());
        assert!(
            http.get(url("/v1/time"))
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        let mut rx = handle.wiretap();

        let resp = http.get(url("/v1/time?x=1")).send().await.unwrap();
        let body = resp.bytes().await.unwrap();
        let HttpTapRecord::Request {
            exchange,
            method,
            path,
            body: sent,
        } = next(&mut rx).await
        else {
            panic!("request first");
        };
        assert_eq!((method.as_str(), path.as_str()), ("GET", "/v1/time?x=1"));
        assert!(sent.is_empty());
        assert_eq!(
            next(&mut rx).await,
            HttpTapRecord::Response {
                exchange,
                status: 200,
                body: body.clone()
            }
        );

        // A body goes to the handler unchanged (the core refuses it) and is recorded both ways.
        let payload = b"\x07wiretap canary 0123456789".to_vec();
        let resp = http
            .post(url("/v1/signup"))
            .body(payload.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert_eq!(status, 400);
        let answer = resp.bytes().await.unwrap();
        let HttpTapRecord::Request {
            exchange, body: b, ..
        } = next(&mut rx).await
        else {
            panic!("request first");
        };
        assert_eq!(b.as_ref(), payload.as_slice());
        assert_eq!(
            next(&mut rx).await,
            HttpTapRecord::Response {
                exchange,
                status,
                body: answer
            }
        );

        // Oversize bodies are still refused with 413 while tapped.
        for size in [8 * 1024 + 1, 1024 * 1024] {
            let resp = http
                .post(url("/v1/signup"))
                .body(vec![0u8; size])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 413, "{size}");
            assert!(matches!(next(&mut rx).await, HttpTapRecord::Request { .. }));
            assert!(matches!(
                next(&mut rx).await,
                HttpTapRecord::Response { status: 413, .. }
            ));
        }

        // Once the receiver is gone nothing is buffered any more.
        drop(rx);
        assert!(
            http.get(url("/v1/time"))
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        assert!(handle.tap.active().is_none());
        handle.shutdown().await;
    }
}
