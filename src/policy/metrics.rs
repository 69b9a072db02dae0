//! The policies' lines of `/metrics`: refusals by pool, policy and status,
//! and compressed responses by pool. Pools without policies write nothing.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Policy;

/// `pools`: (pool name, its policy) of every pool that has one.
pub fn write<'a>(out: &mut String, pools: &[(&'a str, &'a Policy)]) {
    let _ = writeln!(
        out,
        "# HELP wharf_policy_refusals_total Requests a pool policy refused, by pool, policy and status.\n\
         # TYPE wharf_policy_refusals_total counter"
    );
    for (pool, p) in pools {
        let s = &p.stats;
        let rows = [
            ("allow", 403, &s.denied),
            ("auth", 401, &s.unauthorized),
            ("auth", 429, &s.auth_busy),
            ("ratelimit", 429, &s.limited),
        ];
        for (policy, status, n) in rows {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "wharf_policy_refusals_total{{pool=\"{}\",policy=\"{policy}\",status=\"{status}\"}} {n}",
                pool
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP wharf_policy_compressed_total Responses compressed by wharf.compress, by pool.\n\
         # TYPE wharf_policy_compressed_total counter"
    );
    for (pool, p) in pools {
        let n = p.stats.compressed.load(Ordering::Relaxed);
        let _ = writeln!(out, "wharf_policy_compressed_total{{pool=\"{pool}\"}} {n}");
    }
}
