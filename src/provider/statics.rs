//! `--static` pools and `--provider none`: fixed backends that serve any host.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Provider, Publisher};
#[cfg(test)]
use crate::model::PoolOptions;
use crate::model::{BackendStatus, Desired, DesiredBackend, DesiredPool, StaticPool};

/// Add the `--static` pools: ready backends that serve any host. A static
/// pool replaces a discovered pool of the same name (reported as a problem).
pub fn add_static(d: &mut Desired, statics: &[StaticPool]) {
    for sp in statics {
        if d.pools.contains_key(&sp.name) {
            d.problems.push(format!(
                "pool {}: --static replaces the discovered pool of that name",
                sp.name
            ));
        }
        let opts = match crate::labels::static_options(&sp.labels) {
            Ok(opts) => opts,
            Err(e) => {
                d.problems
                    .push(format!("pool {} (--static) is not served: {e}", sp.name));
                continue;
            }
        };
        let backends = sp
            .addrs
            .iter()
            .map(|a| DesiredBackend {
                id: format!("static:{}", sp.name),
                container: "static".into(),
                addr: *a,
                weight: 1,
                status: BackendStatus::Ready,
            })
            .collect();
        d.pools.insert(sp.name.clone(), DesiredPool { opts, backends });
    }
}

/// `--provider none`: nothing is discovered; the publisher adds the static
/// pools to an empty state once, and discovery is ready at once.
#[derive(Debug, Default)]
pub struct NoProvider;

impl Provider for NoProvider {
    fn run(self: Box<Self>, out: Publisher) -> BoxFuture<'static, ()> {
        async move {
            out.status(|s| s.provider = "none".into());
            out.publish(Desired::default());
            out.synced();
            futures::future::pending::<()>().await
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pools_are_ready_and_replace_a_discovered_pool_of_that_name() {
        let mut d = Desired::default();
        d.pools.insert(
            "web".into(),
            DesiredPool {
                opts: PoolOptions::default(),
                backends: vec![],
            },
        );
        let sp = crate::config::parse_static("web=127.0.0.1:9000,127.0.0.1:9001").unwrap();
        add_static(&mut d, &[sp]);
        assert_eq!(d.pools["web"].backends.len(), 2);
        assert!(d.pools["web"].backends.iter().all(|b| b.status == BackendStatus::Ready));
        assert_eq!(d.problems.len(), 1);
    }

    #[test]
    fn static_labels_set_pool_options_and_a_bad_one_leaves_the_pool_out_with_the_reason() {
        let mut sp = crate::config::parse_static("web=127.0.0.1:9000").unwrap();
        sp.labels.push(("wharf.compress".into(), "gzip".into()));
        let mut d = Desired::default();
        add_static(&mut d, &[sp.clone()]);
        assert_eq!(d.pools["web"].opts.policies.compress, [crate::model::Encoding::Gzip]);
        sp.labels.push(("wharf.auth.basic".into(), "ann:plain".into()));
        let mut d = Desired::default();
        add_static(&mut d, &[sp]);
        assert!(!d.pools.contains_key("web"));
        assert!(d.problems[0].contains("wharf.auth.basic"), "{:?}", d.problems);
    }
}
