//! Why a request could not be proxied, and the one tested mapping from that
//! to what the client sees: a status, a short plain-text body, and an
//! `x-wharf-error` header naming the cause.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

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
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoBackend(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
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
}
