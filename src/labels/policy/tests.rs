use std::collections::HashMap;
use std::time::Duration;

use crate::labels::{parse, LabelContext, LabelError, Parsed};
use crate::model::{Encoding, Policies, RateKey, RateLimit};

/// A bcrypt hash of "s3cret" (cost 4).
const BCRYPT: &str = "$2b$04$0Dd3jOYxxN3uT.3pGJxVoemIZ4CAkhCslyMj53gprdm02MDTZ9ysS";
const ARGON2: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQxMjM0$JM2VOlx2nBW0zFk6LwF/6DU0m7XNqODU/mbbImE5zq8";

fn outcome(pairs: &[(&str, &str)]) -> (Parsed, Vec<String>) {
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert("wharf.enable".into(), "true".into());
    for (k, v) in pairs {
        labels.insert(format!("wharf.{k}"), v.to_string());
    }
    let ctx = LabelContext {
        prefix: "wharf",
        exposed_by_default: false,
        container_name: "admin",
        exposed_ports: &[],
    };
    let out = parse(&labels, &ctx);
    (out.parsed, out.warnings)
}

fn policies(pairs: &[(&str, &str)]) -> Policies {
    match outcome(pairs).0 {
        Parsed::Member(spec) => *spec.pool_opts.policies,
        other => panic!("{pairs:?}: {other:?}"),
    }
}

fn errors(pairs: &[(&str, &str)]) -> Vec<LabelError> {
    match outcome(pairs).0 {
        Parsed::Invalid(errors) => errors,
        other => panic!("{pairs:?}: {other:?}"),
    }
}

#[test]
fn no_policy_labels_give_no_policies() {
    assert!(policies(&[]).is_empty());
}

#[test]
fn allow_and_deny_lists_parse_and_a_bad_network_excludes_with_the_reason() {
    let p = policies(&[("allow", "10.0.0.0/8, 127.0.0.1"), ("deny", "10.6.0.0/16")]);
    assert_eq!(p.allow.len(), 2);
    assert_eq!(p.allow[1].to_string(), "127.0.0.1/32");
    assert_eq!(p.deny[0].to_string(), "10.6.0.0/16");
    let e = errors(&[("allow", "10.0.0.0/8,,")]);
    assert_eq!(e[0].label, "wharf.allow");
    assert!(e[0].reason.contains("stray comma"), "{e:?}");
    let e = errors(&[("deny", "10.0.0.0/33")]);
    assert!(e[0].reason.contains("e.g."), "{e:?}");
}

#[test]
fn basic_auth_takes_bcrypt_and_argon2_hashes_even_with_commas() {
    let users = format!("ann:{BCRYPT}, bob:{ARGON2}");
    let p = policies(&[("auth.basic", &users), ("auth.forward", "true")]);
    let auth = p.auth.unwrap();
    assert_eq!(
        auth.users,
        vec![("ann".into(), BCRYPT.into()), ("bob".into(), ARGON2.into())]
    );
    assert!(auth.forward);
    assert_eq!(auth.file, None);
}

#[test]
fn a_plain_text_password_is_a_label_error_that_says_how_to_hash() {
    for value in ["ann:s3cret", "ann:$2b$04$short", "ann", ":x"] {
        let e = errors(&[("auth.basic", value)]);
        assert_eq!(e[0].label, "wharf.auth.basic", "{value}");
        assert!(!e[0].reason.is_empty());
    }
    let e = errors(&[("auth.basic", "ann:s3cret")]);
    assert!(
        e[0].reason.contains("plain passwords are refused") && e[0].reason.contains("htpasswd"),
        "{e:?}"
    );
    // The error quotes the label value as given: the user sees which label, not a secret.
    assert!(e[0].reason.contains("\"ann\""), "{e:?}");
}

#[test]
fn a_basic_file_must_be_an_absolute_path() {
    let p = policies(&[("auth.basic_file", "/run/secrets/users")]);
    assert_eq!(p.auth.unwrap().file.as_deref(), Some("/run/secrets/users"));
    let e = errors(&[("auth.basic_file", "users.txt")]);
    assert!(e[0].reason.contains("absolute"), "{e:?}");
}

#[test]
fn auth_options_without_auth_are_warned_about() {
    let (parsed, warnings) = outcome(&[("auth.forward", "true")]);
    assert!(matches!(parsed, Parsed::Member(_)));
    assert!(
        warnings.iter().any(|w| w.contains("auth.forward ignored")),
        "{warnings:?}"
    );
}

#[test]
fn rate_limits_parse_with_burst_and_key() {
    let p = policies(&[("ratelimit", "10/s"), ("ratelimit.burst", "5")]);
    let want = RateLimit {
        rate: 10,
        period: Duration::from_secs(1),
        burst: 5,
        by: RateKey::Client,
    };
    assert_eq!(p.ratelimit, Some(want));
    let p = policies(&[("ratelimit", "100/m"), ("ratelimit.by", "header:X-Api-Key")]);
    let r = p.ratelimit.unwrap();
    assert_eq!((r.rate, r.period, r.burst), (100, Duration::from_secs(60), 100));
    assert_eq!(r.by, RateKey::Header("x-api-key".into()));
    let r = policies(&[("ratelimit", "5/10s"), ("ratelimit.by", "pool")])
        .ratelimit
        .unwrap();
    assert_eq!((r.period, r.by), (Duration::from_secs(10), RateKey::Pool));
    for bad in ["10", "0/s", "ten/s", "10/fortnight", "10/0s", "10/2d"] {
        let e = errors(&[("ratelimit", bad)]);
        assert_eq!(e[0].label, "wharf.ratelimit", "{bad}");
    }
    let e = errors(&[("ratelimit", "10/s"), ("ratelimit.by", "cookie:x")]);
    assert_eq!(e[0].label, "wharf.ratelimit.by");
    let (_, warnings) = outcome(&[("ratelimit.burst", "5")]);
    assert!(
        warnings.iter().any(|w| w.contains("ratelimit.burst ignored")),
        "{warnings:?}"
    );
}

#[test]
fn compress_takes_a_boolean_or_a_list_of_encodings() {
    assert_eq!(policies(&[("compress", "true")]).compress, Encoding::ALL);
    assert!(policies(&[("compress", "false")]).compress.is_empty());
    assert_eq!(
        policies(&[("compress", "gzip, br,gzip")]).compress,
        vec![Encoding::Gzip, Encoding::Br]
    );
    let e = errors(&[("compress", "deflate")]);
    assert!(e[0].reason.contains("zstd, br, gzip"), "{e:?}");
}

#[test]
fn header_labels_set_and_remove_and_refuse_what_wharf_manages() {
    let p = policies(&[
        ("headers.request.X-Tenant", "blue"),
        ("headers.response.Server", ""),
        ("headers.response.X-Frame-Options", "DENY"),
        ("security_headers", "true"),
    ]);
    assert_eq!(p.request_headers, vec![("x-tenant".to_string(), "blue".to_string())]);
    assert_eq!(
        p.response_headers,
        vec![
            ("server".into(), String::new()),
            ("x-frame-options".into(), "DENY".into())
        ]
    );
    assert!(p.security_headers);
    let e = errors(&[("headers.request.Host", "evil")]);
    assert!(e[0].reason.contains("managed by wharf"), "{e:?}");
    let e = errors(&[("headers.response.X Bad", "1")]);
    assert!(e[0].reason.contains("not a header name"), "{e:?}");
    let e = errors(&[("headers.response.X-Ok", "bad\u{1}value")]);
    assert!(e[0].reason.contains("header value"), "{e:?}");
}

#[test]
fn policy_labels_are_known_and_near_misses_get_a_suggestion() {
    let (_, warnings) = outcome(&[("allow", "10.0.0.0/8"), ("headers.request.X-A", "1")]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let (_, warnings) = outcome(&[("ratelimt", "10/s")]);
    assert!(
        warnings.iter().any(|w| w.contains("did you mean wharf.ratelimit")),
        "{warnings:?}"
    );
}

#[test]
fn members_that_disagree_on_a_policy_are_reported_by_label() {
    let a = policies(&[("allow", "10.0.0.0/8"), ("compress", "true")]);
    let b = policies(&[("allow", "10.0.0.0/16"), ("compress", "true")]);
    let opts = |policies| crate::model::PoolOptions {
        policies: Box::new(policies),
        ..Default::default()
    };
    assert_eq!(
        crate::labels::differences(&opts(a), &opts(b), "wharf"),
        vec!["wharf.allow"]
    );
}
