//! Per host, where its certificate comes from (`wharf.tls`): what the ACME
//! manager orders and what `wharf check` asks a certificate for.

use crate::model::{HostPattern, TlsMode};

use super::RoutingTable;

/// One host of one pool and its effective TLS mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTls {
    pub host: HostPattern,
    pub pool: String,
    pub mode: TlsMode,
}

impl RoutingTable {
    /// Every (host, pool) with the pool's effective mode
    /// ([`TlsMode::effective`]), sorted by host then pool. Pools without a
    /// host serve any host and are not listed: no certificate can name "any".
    pub fn hosts_tls(&self, acme_configured: bool) -> Vec<HostTls> {
        let mut out: Vec<HostTls> = self
            .pools
            .iter()
            .flat_map(|p| {
                let mode = TlsMode::effective(p.opts.tls, !p.opts.hosts.is_empty(), acme_configured);
                p.opts.hosts.iter().map(move |h| HostTls {
                    host: h.clone(),
                    pool: p.name.clone(),
                    mode,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.host, &a.pool).cmp(&(&b.host, &b.pool)));
        out
    }

    /// The hosts that want an ACME certificate, once ACME is configured:
    /// those of pools with `wharf.tls=acme` or no `wharf.tls` at all. Sorted,
    /// without duplicates (a host in two pools, e.g. by path, is listed
    /// once). Wildcards are included: they need DNS-01, which the caller
    /// reports rather than orders.
    pub fn acme_hosts(&self) -> Vec<HostPattern> {
        let mut hosts: Vec<HostPattern> = self
            .hosts_tls(true)
            .into_iter()
            .filter(|h| h.mode == TlsMode::Acme)
            .map(|h| h.host)
            .collect();
        hosts.dedup();
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Desired, DesiredPool, PoolOptions};
    use crate::routing::Registry;

    fn table(pools: &[(&str, &[&str], Option<TlsMode>)]) -> RoutingTable {
        let mut d = Desired::default();
        for (name, hosts, tls) in pools {
            let hosts = hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(sfx) => HostPattern::Wildcard(sfx.to_string()),
                    None => HostPattern::Exact(h.to_string()),
                })
                .collect();
            let opts = PoolOptions {
                hosts,
                tls: *tls,
                ..PoolOptions::default()
            };
            d.pools.insert(name.to_string(), DesiredPool { opts, backends: vec![] });
        }
        RoutingTable::build(d, &Registry::default(), None)
    }

    #[test]
    fn acme_hosts_are_those_with_acme_or_no_tls_label_once_each_wildcards_included() {
        let t = table(&[
            ("shop", &["b.example.com", "a.example.com"], None),
            ("api", &["api.example.com", "a.example.com"], Some(TlsMode::Acme)),
            ("files", &["f.example.com"], Some(TlsMode::File)),
            ("plain", &["p.example.com"], Some(TlsMode::Off)),
            ("wild", &["*.w.example.com"], None),
            ("any", &[], None),
        ]);
        let got: Vec<String> = t.acme_hosts().iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            ["a.example.com", "api.example.com", "b.example.com", "*.w.example.com"]
        );
    }

    #[test]
    fn without_acme_an_unlabelled_pool_with_a_host_is_file_and_labels_always_win() {
        let t = table(&[("shop", &["a.com"], None), ("api", &["b.com"], Some(TlsMode::Acme))]);
        let modes: Vec<(String, TlsMode)> = t
            .hosts_tls(false)
            .into_iter()
            .map(|h| (h.host.to_string(), h.mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("a.com".to_string(), TlsMode::File),
                ("b.com".to_string(), TlsMode::Acme)
            ]
        );
        assert_eq!(t.hosts_tls(true)[0].mode, TlsMode::Acme);
    }
}
