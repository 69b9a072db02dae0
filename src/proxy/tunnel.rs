//! Protocol upgrades (WebSocket and others): after a `101`, the client and
//! backend connections are spliced together (hyper's `upgrades.rs` example).

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::debug;

use super::body::Guard;

/// Splice the two upgraded connections until either side closes. The guard
/// keeps the backend's in-flight count up for the tunnel's lifetime.
pub async fn tunnel(on_client: OnUpgrade, on_backend: OnUpgrade, guard: Guard) {
    let (client, backend) = match tokio::try_join!(on_client, on_backend) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    drop(guard);
}
