//! `wharf-demo probe URL`: a tiny HTTP GET client for Docker HEALTHCHECKs
//! in images without a shell or curl.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::header;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::parse::parse_http_url;

/// Whole-probe timeout (connect, request and response head).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// GETs `url`. `Ok` carries a one-line report for a 2xx answer, `Err` one
/// for anything else (other status, error, timeout).
pub async fn probe(url: &str) -> Result<String, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, get_status(url)).await {
        Ok(Ok(status)) if status.is_success() => Ok(format!("probe {url}: {status}")),
        Ok(Ok(status)) => Err(format!("probe {url}: {status}")),
        Ok(Err(err)) => Err(format!("probe {url}: error: {err}")),
        Err(_) => Err(format!("probe {url}: timed out after {PROBE_TIMEOUT:?}")),
    }
}

async fn get_status(url: &str) -> Result<hyper::StatusCode, String> {
    let target = parse_http_url(url)?;
    // Resolve IPs and localhost without the system resolver: a static
    // binary in a `FROM scratch` image has no NSS modules.
    let stream = match target.host.parse::<IpAddr>() {
        Ok(ip) => TcpStream::connect(SocketAddr::new(ip, target.port)).await,
        Err(_) if target.host.eq_ignore_ascii_case("localhost") => {
            TcpStream::connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), target.port)).await
        }
        Err(_) => TcpStream::connect((target.host.as_str(), target.port)).await,
    }
    .map_err(|err| format!("connect: {err}"))?;

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("handshake: {err}"))?;
    tokio::spawn(connection);

    let request = Request::get(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::USER_AGENT, "wharf-demo-probe")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|err| format!("request: {err}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("request: {err}"))?;
    Ok(response.status())
}
