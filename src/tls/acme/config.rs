//! The ACME flags, flattened into wharf's command line. ACME is on when
//! `--acme-email` is given; everything else has a default or is required
//! with a message that says what to do.

use std::path::PathBuf;
use std::time::Duration;

use super::{AcmeSettings, ChallengeKind, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
use crate::text::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct AcmeOpts {
    /// Turn on automatic certificates (ACME) for every `wharf.host` of pools
    /// with `wharf.tls=acme` (the default for pools with a host once this is
    /// set). The CA may send expiry notices to this address.
    #[arg(long, env = "WHARF_ACME_EMAIL", value_name = "EMAIL", global = true)]
    pub acme_email: Option<String>,

    /// The ACME directory URL of the CA (any RFC 8555 server).
    #[arg(long, env = "WHARF_ACME_DIRECTORY", value_name = "URL", default_value = LETS_ENCRYPT, global = true)]
    pub acme_directory: String,

    /// Use Let's Encrypt's staging directory (untrusted certificates, high
    /// rate limits): for trying a setup out.
    #[arg(long, env = "WHARF_ACME_STAGING", global = true)]
    pub acme_staging: bool,

    /// A PEM file of CA certificates to trust for the ACME server's own
    /// HTTPS, beside the built-in public roots (private CAs, tests).
    #[arg(long, env = "WHARF_ACME_CA_ROOT", value_name = "PEM", global = true)]
    pub acme_ca_root: Option<PathBuf>,

    /// Where the account, certificates and orders in progress are kept (a
    /// volume: certificates must survive restarts, or the CA's rate limits
    /// are soon hit). Required with --acme-email.
    #[arg(long, env = "WHARF_ACME_STORAGE", value_name = "DIR", global = true)]
    pub acme_storage: Option<PathBuf>,

    /// The challenge that proves control of a name: http-01 (the CA fetches
    /// http://NAME/.well-known/acme-challenge/… on port 80) or tls-alpn-01
    /// (the CA opens TLS to NAME:443).
    #[arg(
        long,
        env = "WHARF_ACME_CHALLENGE",
        value_enum,
        default_value = "http-01",
        global = true
    )]
    pub acme_challenge: ChallengeKind,

    /// Renew this long before a certificate expires instead of at two thirds
    /// of its lifetime (e.g. 720h). A testing knob: a value longer than the
    /// lifetime renews every few seconds.
    #[arg(long, env = "WHARF_ACME_RENEW_BEFORE", value_name = "DURATION", value_parser = parse_duration, global = true)]
    pub acme_renew_before: Option<Duration>,
}

impl AcmeOpts {
    /// `None` when ACME is off (no `--acme-email`).
    pub fn into_settings(self) -> Result<Option<AcmeSettings>, String> {
        let Some(email) = self.acme_email.filter(|e| !e.is_empty()) else {
            if self.acme_storage.is_some() || self.acme_staging {
                return Err("--acme-storage/--acme-staging need --acme-email: it turns ACME on".into());
            }
            return Ok(None);
        };
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(format!("--acme-email {email:?} is not an email address"));
        }
        let storage = self
            .acme_storage
            .ok_or("--acme-email needs --acme-storage DIR (a volume): certificates must survive restarts")?;
        let directory = if self.acme_staging {
            if self.acme_directory != LETS_ENCRYPT {
                return Err("--acme-staging and --acme-directory both name the CA: give one".into());
            }
            LETS_ENCRYPT_STAGING.to_string()
        } else {
            self.acme_directory
        };
        if !directory.starts_with("https://") {
            return Err(format!("--acme-directory {directory}: must be an https:// URL"));
        }
        // An empty variable (compose's `${VAR:-}`) means unset.
        let ca_root = self.acme_ca_root.filter(|p| !p.as_os_str().is_empty());
        if let Some(root) = &ca_root {
            if !root.is_file() {
                return Err(format!("--acme-ca-root {}: no such file", root.display()));
            }
        }
        Ok(Some(AcmeSettings {
            directory,
            email: Some(email),
            ca_root,
            storage,
            challenge: self.acme_challenge,
            renew_before: self.acme_renew_before,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        acme: AcmeOpts,
    }

    fn settings(args: &[&str]) -> Result<Option<AcmeSettings>, String> {
        let mut all = vec!["t"];
        all.extend_from_slice(args);
        T::try_parse_from(all).map_err(|e| e.to_string())?.acme.into_settings()
    }

    #[test]
    fn acme_is_off_without_an_email_and_lets_encrypt_production_with_one() {
        assert!(settings(&[]).unwrap().is_none());
        let s = settings(&["--acme-email", "a@b.c", "--acme-storage", "/tmp"])
            .unwrap()
            .unwrap();
        assert_eq!(s.directory, LETS_ENCRYPT);
        assert_eq!(s.challenge, ChallengeKind::Http01);
        assert_eq!(s.renew_before, None);
    }

    #[test]
    fn staging_switches_the_directory_and_conflicts_with_an_explicit_one() {
        let s = settings(&["--acme-email", "a@b.c", "--acme-storage", "/tmp", "--acme-staging"])
            .unwrap()
            .unwrap();
        assert_eq!(s.directory, LETS_ENCRYPT_STAGING);
        let e = settings(&[
            "--acme-email",
            "a@b.c",
            "--acme-storage",
            "/tmp",
            "--acme-staging",
            "--acme-directory",
            "https://ca.example/dir",
        ])
        .unwrap_err();
        assert!(e.contains("give one"), "{e}");
    }

    #[test]
    fn bad_acme_flags_are_refused_with_the_fix() {
        let e = settings(&["--acme-email", "a@b.c"]).unwrap_err();
        assert!(e.contains("--acme-storage DIR"), "{e}");
        let e = settings(&["--acme-email", "nobody", "--acme-storage", "/tmp"]).unwrap_err();
        assert!(e.contains("not an email"), "{e}");
        let e = settings(&["--acme-storage", "/tmp"]).unwrap_err();
        assert!(e.contains("need --acme-email"), "{e}");
        let e = settings(&[
            "--acme-email",
            "a@b.c",
            "--acme-storage",
            "/tmp",
            "--acme-directory",
            "http://x/dir",
        ])
        .unwrap_err();
        assert!(e.contains("https://"), "{e}");
        let s = settings(&[
            "--acme-email",
            "a@b.c",
            "--acme-storage",
            "/tmp",
            "--acme-challenge",
            "tls-alpn-01",
            "--acme-renew-before",
            "720h",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.challenge, ChallengeKind::TlsAlpn01);
        assert_eq!(s.renew_before, Some(Duration::from_secs(720 * 3600)));
    }
}
