//! Why a request could not be proxied, and the one tested mapping from that
//! to what the client sees: a status, a short plain-text body, and an
//! `x-wharf-error` header naming the cause.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::client_body::ClientFault;
use crate::policy::Refusal;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no route for this host and path")]
    NoRoute,
    #[error("pool {0} has no ready backend")]
    NoBackend(String),
    #[error("no backend of pool {pool} could be reached ({detail})")]
    Unreachable { pool: String, detail: String },
    #[error("backend did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The client's side failed (its body); never counted against a backend.
    #[error("{0}")]
    Client(ClientFault),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Every backend at its `wharf.max_conns` and the queue full or too slow.
    #[error("every backend of pool {pool} is at its limit of {max} connections (wharf.max_conns)")]
    BackendFull { pool: String, max: u32 },
    /// The backend answered something wharf must not pass on.
    #[error("bad response from {pool}: {detail}")]
    BadResponse { pool: String, detail: &'static str },
    /// A pool policy said no (`wharf.allow`, `wharf.auth.basic`, `wharf.ratelimit`).
    #[error("{0}")]
    Refused(Refusal),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoBackend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Client(ClientFault::Malformed) => StatusCode::BAD_REQUEST,
            ProxyError::Client(ClientFault::Timeout(_)) => StatusCode::REQUEST_TIMEOUT,
            // nginx's 499: nobody reads it, but the access log says whose fault it was.
            ProxyError::Client(ClientFault::Gone) => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BackendFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadResponse { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Refused(Refusal::Forbidden) => StatusCode::FORBIDDEN,
            ProxyError::Refused(Refusal::Unauthorized { .. }) => StatusCode::UNAUTHORIZED,
            ProxyError::Refused(Refusal::RateLimited { .. } | Refusal::AuthBusy) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `x-wharf-error` value: a stable token for scripts and dashboards.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no-route",
            ProxyError::NoBackend(_) => "no-backend",
            ProxyError::Unreachable { .. } => "unreachable",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::Client(ClientFault::Malformed) => "bad-request-body",
            ProxyError::Client(ClientFault::Timeout(_)) => "body-timeout",
            ProxyError::Client(ClientFault::Gone) => "client-gone",
            ProxyError::MethodNotAllowed => "method-not-allowed",
            ProxyError::BackendFull { .. } => "backend-full",
            ProxyError::BadResponse { .. } => "bad-response",
            ProxyError::Refused(Refusal::Forbidden) => "forbidden",
            ProxyError::Refused(Refusal::Unauthorized { .. }) => "unauthorized",
            ProxyError::Refused(Refusal::RateLimited { .. }) => "rate-limited",
            ProxyError::Refused(Refusal::AuthBusy) => "auth-busy",
        }
    }

    pub fn to_response(&self) -> Response<Full<Bytes>> {
        self.respond(format!("wharf: {self}\n"))
    }

    /// The response, its body naming the request id so a user's report can be
    /// matched with the access log.
    pub fn to_response_for(&self, request_id: &HeaderValue) -> Response<Full<Bytes>> {
        let id = request_id.to_str().unwrap_or_default();
        self.respond(format!("wharf: {self} (request id {id})\n"))
    }

    fn respond(&self, body: String) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert("x-wharf-error", HeaderValue::from_static(self.code()));
        match self {
            ProxyError::MethodNotAllowed => {
                h.insert(
                    http::header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
            }
            // The request's framing is lost or its client too slow: the
            // connection cannot carry another request.
            ProxyError::Client(_) | ProxyError::BadRequest(_) => {
                h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            ProxyError::Refused(Refusal::Unauthorized { challenge }) => {
                h.insert(http::header::WWW_AUTHENTICATE, challenge.clone());
            }
            ProxyError::Refused(Refusal::RateLimited { retry_after }) => {
                h.insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ProxyError::Refused(Refusal::AuthBusy) => {
                h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status_and_code() {
        let cases = [
            (ProxyError::NoRoute, 404, "no-route"),
            (ProxyError::NoBackend("web".into()), 503, "no-backend"),
            (
                ProxyError::Unreachable {
                    pool: "web".into(),
                    detail: "refused".into(),
                },
                502,
                "unreachable",
            ),
            (ProxyError::Timeout(std::time::Duration::from_secs(1)), 504, "timeout"),
            (ProxyError::BadRequest("no host"), 400, "bad-request"),
            (ProxyError::Client(ClientFault::Malformed), 400, "bad-request-body"),
            (
                ProxyError::Client(ClientFault::Timeout(std::time::Duration::from_secs(1))),
                408,
                "body-timeout",
            ),
            (ProxyError::Client(ClientFault::Gone), 499, "client-gone"),
            (ProxyError::MethodNotAllowed, 405, "method-not-allowed"),
            (
                ProxyError::BackendFull {
                    pool: "web".into(),
                    max: 4,
                },
                503,
                "backend-full",
            ),
            (
                ProxyError::BadResponse {
                    pool: "web".into(),
                    detail: "unsolicited 101",
                },
                502,
                "bad-response",
            ),
            (ProxyError::Refused(Refusal::Forbidden), 403, "forbidden"),
            (
                ProxyError::Refused(Refusal::Unauthorized {
                    challenge: HeaderValue::from_static("Basic realm=\"x\""),
                }),
                401,
                "unauthorized",
            ),
            (
                ProxyError::Refused(Refusal::RateLimited { retry_after: 3 }),
                429,
                "rate-limited",
            ),
            (ProxyError::Refused(Refusal::AuthBusy), 429, "auth-busy"),
        ];
        for (e, status, code) in cases {
            let r = e.to_response();
            assert_eq!(r.status().as_u16(), status, "{e}");
            assert_eq!(r.headers()["x-wharf-error"], code);
            assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        }
        let r = ProxyError::NoRoute.to_response_for(&HeaderValue::from_static("abc123"));
        assert_eq!(r.headers()["x-wharf-error"], "no-route");
        let body = format!("{:?}", r.body());
        assert!(body.contains("(request id abc123)"), "{body}");
    }

    #[test]
    fn refusals_carry_the_header_their_status_requires() {
        let challenge = HeaderValue::from_static("Basic realm=\"admin\", charset=\"UTF-8\"");
        let r = ProxyError::Refused(Refusal::Unauthorized {
            challenge: challenge.clone(),
        })
        .to_response();
        assert_eq!(r.headers()[http::header::WWW_AUTHENTICATE], challenge);
        let r = ProxyError::Refused(Refusal::RateLimited { retry_after: 3 }).to_response();
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "3");
        let r = ProxyError::Refused(Refusal::AuthBusy).to_response();
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "1");
        let r = ProxyError::Refused(Refusal::Forbidden).to_response();
        assert!(!r.headers().contains_key(http::header::RETRY_AFTER));
    }
}
