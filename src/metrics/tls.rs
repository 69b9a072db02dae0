//! Certificate families: what an operator alerts on before a certificate
//! expires (`wharf_certificate_expiry_seconds`, from the certificates being
//! served, files and ACME alike) and whether ACME orders succeed.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use prometheus_client::encoding::DescriptorEncoder;

use super::{counter, gauge, Sources};
use crate::tls::acme::seconds_until;

#[derive(Debug)]
pub(super) struct Certificates(pub(super) Sources);

impl prometheus_client::collector::Collector for Certificates {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let now = SystemTime::now();
        if let Some(tls) = &self.0.tls {
            let served = tls.store.served();
            let rows: Vec<(String, String, i64)> = served
                .iter()
                .map(|c| (c.names.join(","), c.serial.clone(), seconds_until(c.not_after, now)))
                .collect();
            gauge(
                &mut enc,
                "wharf_certificate_expiry_seconds",
                "Seconds until a served certificate expires (negative: expired).",
                served.iter().zip(&rows).map(|(c, (names, serial, secs))| {
                    (
                        vec![
                            ("names", names.as_str()),
                            ("source", c.source.as_str()),
                            ("serial", serial.as_str()),
                        ],
                        *secs,
                    )
                }),
            )?;
        }
        if let Some(acme) = &self.0.acme {
            counter(
                &mut enc,
                "wharf_acme_orders",
                "ACME orders by outcome.",
                [
                    (vec![("outcome", "issued")], acme.orders_issued.load(Ordering::Relaxed)),
                    (vec![("outcome", "failed")], acme.orders_failed.load(Ordering::Relaxed)),
                ],
            )?;
            let expiry = acme.expiry_seconds(now);
            gauge(
                &mut enc,
                "wharf_acme_certificate_expiry_seconds",
                "Seconds until the ACME certificate of a name expires.",
                expiry.iter().map(|(name, secs)| (vec![("name", name.as_str())], *secs)),
            )?;
        }
        Ok(())
    }
}
