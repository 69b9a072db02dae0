//! The policies' families: refusals by pool, policy and status, and
//! compressed responses by pool. Pools without policies add no series.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, Sources};

#[derive(Debug)]
pub(super) struct Policies(pub(super) Sources);

impl prometheus_client::collector::Collector for Policies {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let table = self.0.router.load();
        let pools: Vec<_> = table
            .pools
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.policy.as_deref()?)))
            .collect();
        let refusals = pools.iter().flat_map(|(pool, p)| {
            let s = &p.stats;
            [
                ("allow", "403", &s.denied),
                ("auth", "401", &s.unauthorized),
                ("auth", "429", &s.auth_busy),
                ("ratelimit", "429", &s.limited),
            ]
            .map(|(policy, status, n)| {
                (
                    vec![("pool", *pool), ("policy", policy), ("status", status)],
                    n.load(Ordering::Relaxed),
                )
            })
        });
        counter(
            &mut enc,
            "wharf_policy_refusals",
            "Requests a pool policy refused, by pool, policy and status.",
            refusals,
        )?;
        counter(
            &mut enc,
            "wharf_policy_compressed",
            "Responses compressed by wharf.compress, by pool.",
            pools
                .iter()
                .map(|(pool, p)| (vec![("pool", *pool)], p.stats.compressed.load(Ordering::Relaxed))),
        )
    }
}
