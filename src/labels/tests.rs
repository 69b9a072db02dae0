use super::*;
use crate::model::*;

/// Labels from `"key=value;key=value"`, keys relative to `prefix`.
fn labels_in(prefix: &str, spec: &str) -> HashMap<String, String> {
    let pairs = spec.split(';').filter_map(|kv| kv.split_once('='));
    pairs.map(|(k, v)| (format!("{prefix}.{k}"), v.to_string())).collect()
}

fn labels(spec: &str) -> HashMap<String, String> {
    labels_in("wharf", spec)
}

fn run(prefix: &str, labels: &HashMap<String, String>, ports: &[u16], by_default: bool) -> LabelOutcome {
    let ctx = LabelContext {
        prefix,
        exposed_by_default: by_default,
        container_name: "web-1",
        exposed_ports: ports,
    };
    parse(labels, &ctx)
}

fn outcome(spec: &str) -> LabelOutcome {
    run("wharf", &labels(spec), &[], false)
}

/// The outcome of `spec` plus `enable=true`.
fn enabled(spec: &str) -> LabelOutcome {
    outcome(&format!("enable=true;{spec}"))
}

fn spec(labels: &str) -> ServiceSpec {
    match enabled(labels).parsed {
        Parsed::Member(spec) => spec,
        other => panic!("{labels}: {other:?}"),
    }
}

fn errors(labels: &str) -> Vec<LabelError> {
    match enabled(labels).parsed {
        Parsed::Invalid(errors) => errors,
        other => panic!("{labels}: {other:?}"),
    }
}

/// The reason of the single error of `labels`, which must be about the last label.
fn reason(labels: &str) -> String {
    let (errors, last) = (errors(labels), labels.rsplit(';').next().unwrap());
    let key = format!("wharf.{}", last.split('=').next().unwrap());
    assert_eq!((errors.len(), &errors[0].label), (1, &key), "{labels}");
    errors[0].reason.clone()
}

fn health(path: &str, interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> Option<HealthCheck> {
    let (interval, timeout) = (Duration::from_millis(interval_ms), Duration::from_millis(timeout_ms));
    Some(HealthCheck {
        path: path.into(),
        interval,
        timeout,
        rise,
        fall,
    })
}

fn exact(host: &str) -> Vec<HostPattern> {
    vec![HostPattern::Exact(host.into())]
}

fn wildcard(suffix: &str) -> Vec<HostPattern> {
    vec![HostPattern::Wildcard(format!(".{suffix}"))]
}

fn sticky(cookie: &str) -> Option<Sticky> {
    Some(Sticky { cookie: cookie.into() })
}

#[test]
fn a_container_without_labels_is_not_a_member() {
    let expected = LabelOutcome {
        parsed: Parsed::NotMember,
        warnings: vec![],
    };
    assert_eq!(outcome(""), expected);
}

#[test]
fn membership_follows_enable_then_pool_then_exposed_by_default() {
    // (labels, exposed ports, --exposed-by-default, joins)
    let cases: &[(&str, &[u16], bool, bool)] = &[
        ("enable=true", &[], false, true),
        ("enable=On", &[], false, true),
        ("pool=shop", &[], false, true),
        ("", &[8080], true, true),
        ("", &[80, 443], true, false),
        ("", &[8080], false, false),
        ("port=8080", &[], false, false),
        ("enable=false;pool=shop;port=http", &[], false, false),
        ("enable=no", &[8080], true, false),
    ];
    for &(spec, ports, by_default, joins) in cases {
        let parsed = run("wharf", &labels(spec), ports, by_default).parsed;
        let expected = if joins { "Member" } else { "NotMember" };
        assert!(
            format!("{parsed:?}").starts_with(expected),
            "{spec} {ports:?}: {parsed:?}"
        );
    }
}

#[test]
fn enable_true_alone_gives_every_default() {
    let pool_opts = PoolOptions {
        hosts: vec![],
        path: None,
        strip_prefix: false,
        balance: Balance::RoundRobin,
        sticky: None,
        protocol: Protocol::Http,
        health: None,
        slow_start: Duration::ZERO,
        retries: 2,
        max_conns: 0,
        tls: None,
        https_redirect: false,
        hsts: None,
        connect: false,
        policies: Box::default(),
    };
    assert_eq!(pool_opts, PoolOptions::default());
    let expected = ServiceSpec {
        pool: "web-1".into(),
        port: 80,
        weight: 1,
        network: None,
        pool_opts,
    };
    assert_eq!(
        enabled(""),
        LabelOutcome {
            parsed: Parsed::Member(expected),
            warnings: vec![]
        }
    );
}

#[test]
fn every_label_accepts_its_valid_forms() {
    type Edit = fn(&mut ServiceSpec);
    let cases: &[(&str, Edit)] = &[
        ("pool=A.b_c-9", |s| s.pool = "A.b_c-9".into()),
        ("port= 8080 ", |s| s.port = 8080),
        ("port=65535", |s| s.port = 65535),
        ("weight=0", |s| s.weight = 0),
        ("weight=10000", |s| s.weight = 10000),
        ("network=front", |s| s.network = Some("front".into())),
        ("host=*", |_| {}),
        ("host=API.example.com", |s| s.pool_opts.hosts = exact("api.example.com")),
        ("host=*.example.com", |s| s.pool_opts.hosts = wildcard("example.com")),
        ("path=/api/", |s| s.pool_opts.path = Some("/api".into())),
        ("path=/api/v1", |s| s.pool_opts.path = Some("/api/v1".into())),
        ("path=/", |_| {}),
        ("path=//", |_| {}),
        ("strip_prefix=YES", |s| s.pool_opts.strip_prefix = true),
        ("balance=LEAST_CONN", |s| s.pool_opts.balance = Balance::LeastConn),
        ("balance=ip_hash", |s| s.pool_opts.balance = Balance::IpHash),
        ("balance=random", |s| s.pool_opts.balance = Balance::Random),
        ("balance=p2c", |s| s.pool_opts.balance = Balance::P2c),
        ("sticky=cookie", |s| s.pool_opts.sticky = sticky(DEFAULT_STICKY_COOKIE)),
        ("sticky=Cookie: srv", |s| s.pool_opts.sticky = sticky("srv")),
        ("sticky=off", |_| {}),
        ("protocol=h2c", |s| s.pool_opts.protocol = Protocol::H2c),
        ("protocol=HTTP", |_| {}),
        ("health.path=/up", |s| {
            s.pool_opts.health = health("/up", 5000, 2000, 2, 3)
        }),
        (
            concat!(
                "health.path=/up?x=1;health.interval=1m;",
                "health.timeout=.5s;health.rise=1;health.fall=99"
            ),
            |s| s.pool_opts.health = health("/up?x=1", 60_000, 500, 1, 99),
        ),
        ("slow_start=1m30s", |s| s.pool_opts.slow_start = Duration::from_secs(90)),
        ("retries=0", |s| s.pool_opts.retries = 0),
        ("retries=10", |s| s.pool_opts.retries = 10),
        ("tls=acme", |s| s.pool_opts.tls = Some(TlsMode::Acme)),
        ("tls=file", |s| s.pool_opts.tls = Some(TlsMode::File)),
        ("tls=off", |s| s.pool_opts.tls = Some(TlsMode::Off)),
        ("https_redirect=true", |s| s.pool_opts.https_redirect = true),
        ("hsts=31536000", |s| {
            s.pool_opts.hsts = Some(Duration::from_secs(31_536_000))
        }),
        ("hsts=365d", |s| {
            s.pool_opts.hsts = Some(Duration::from_secs(31_536_000))
        }),
        ("hsts=1h", |s| s.pool_opts.hsts = Some(Duration::from_secs(3600))),
        ("connect=true", |s| s.pool_opts.connect = true),
    ];
    for &(labels, edit) in cases {
        let mut expected = spec("");
        edit(&mut expected);
        assert_eq!(spec(labels), expected, "{labels}");
    }
}

#[test]
fn an_unknown_algorithm_suggests_the_closest_name() {
    let expected = concat!(
        "unknown algorithm \"roundrobin\" (did you mean round_robin?); ",
        "one of round_robin, least_conn, ip_hash, random, p2c"
    );
    assert_eq!(reason("balance=roundrobin"), expected);
}

#[test]
fn every_label_rejects_malformed_values_with_a_reason() {
    let cases = [
        ("enable=maybe", "not a boolean (true/false, yes/no, on/off, 1/0)"),
        ("pool=my shop", "invalid character ' ' (allowed: A-Z a-z 0-9 _ . -)"),
        ("pool=", "a pool name has 1 to 64 characters"),
        ("port=http", "not a port number (1-65535)"),
        ("port=0", "not a port number (1-65535)"),
        ("port=65536", "not a port number (1-65535)"),
        ("weight=10001", "not a whole number from 0 to 10000"),
        ("weight=1.5", "not a whole number from 0 to 10000"),
        ("network= ", "empty network name"),
        ("strip_prefix=sure", "not a boolean"),
        (
            "balance=fastest",
            "unknown algorithm \"fastest\"; one of round_robin, least_conn,",
        ),
        ("sticky=session", "expected \"cookie\" or \"cookie:NAME\""),
        ("sticky=cookie:a,b", "\"a,b\" is not a cookie name"),
        ("sticky=cookie:", "\"\" is not a cookie name"),
        (
            "protocol=h2",
            "unknown protocol \"h2\" (did you mean h2c?); one of http, h2c",
        ),
        ("health.path=healthz", "must start with '/'"),
        (
            "health.path=/a b",
            "spaces, control and non-ASCII characters must be %-encoded",
        ),
        ("health.path=/up;health.interval=0s", "must be more than 0"),
        (
            "health.path=/up;health.timeout=2",
            "missing unit after 2: ms, s, m or h",
        ),
        ("health.path=/up;health.rise=0", "not a whole number from 1 to 100"),
        ("health.path=/up;health.fall=101", "not a whole number from 1 to 100"),
        ("slow_start=soon", "expected a number, like 5s"),
        ("retries=11", "not a whole number from 0 to 10"),
        (
            "tls=letsencrypt",
            "unknown TLS mode \"letsencrypt\"; one of acme, file, off",
        ),
        ("https_redirect=always", "not a boolean"),
        ("connect=yes please", "not a boolean"),
        ("hsts=0", "max-age must be at least 1s"),
        ("hsts=1y", "unknown unit \"y\""),
    ];
    for (labels, expected) in cases {
        let got = reason(labels);
        assert!(got.starts_with(expected), "{labels}: {got}");
    }
}

#[test]
fn malformed_hosts_are_rejected_with_a_hint() {
    let cases = [
        ("example.com:80", "hosts match without the port: use \"example.com\""),
        (
            "*.example.com:8443",
            "hosts match without the port: use \"*.example.com\"",
        ),
        ("a.com,,b.com", "empty host in the list (stray comma?)"),
        ("a.com,", "empty host in the list (stray comma?)"),
        ("a.com,*", "\"*\" (any host) cannot be combined"),
        (
            "api.*.com",
            "\"api.*.com\": '*' only as a leading \"*.\" (\"*.example.com\")",
        ),
        (
            "*api.com",
            "\"*api.com\": '*' only as a leading \"*.\" (\"*.example.com\")",
        ),
        ("a b.com", "invalid character ' ' in host \"a b.com\""),
        ("bücher.de", "invalid character 'ü' in host \"bücher.de\""),
        ("a..com", "\"a..com\" is not a host name"),
        ("*.", "\"*.\" is not a host name"),
    ];
    for (value, expected) in cases {
        assert_eq!(reason(&format!("host={value}")), expected, "{value}");
    }
}

#[test]
fn malformed_paths_are_rejected() {
    let cases = [
        ("api", "must start with '/'"),
        ("/a?b=1", "a path cannot contain '?'"),
        ("/a#b", "a path cannot contain '#'"),
        ("/a b", "spaces, control and non-ASCII characters must be %-encoded"),
        ("/api/*", "a prefix needs no wildcard: \"/api\" serves \"/api/...\""),
    ];
    for (value, expected) in cases {
        assert_eq!(reason(&format!("path={value}")), expected, "{value}");
    }
}

#[test]
fn hosts_are_trimmed_lowercased_deduplicated_and_sorted() {
    let hosts = spec("host= B.example.com,*.Example.com , b.example.com,a.example.com")
        .pool_opts
        .hosts;
    let shown: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    assert_eq!(shown, ["a.example.com", "b.example.com", "*.example.com"]);
}

#[test]
fn host_patterns_match_the_exact_name_or_any_subdomain() {
    let exact = HostPattern::Exact("api.example.com".into());
    assert!(exact.matches("api.example.com") && !exact.matches("x.api.example.com"));
    let wildcard = HostPattern::Wildcard(".example.com".into());
    assert!(wildcard.matches("a.example.com") && wildcard.matches("a.b.example.com"));
    assert!(!wildcard.matches("example.com") && !wildcard.matches("badexample.com"));
}

#[test]
fn the_pool_defaults_to_the_compose_service_then_the_container_name() {
    let mut compose = labels("enable=true");
    compose.insert(COMPOSE_SERVICE_LABEL.into(), "api".into());
    let pool = |labels: &HashMap<String, String>| match run("wharf", labels, &[], false).parsed {
        Parsed::Member(spec) => spec.pool,
        other => panic!("{other:?}"),
    };
    assert_eq!(pool(&compose), "api");
    compose.insert("wharf.pool".into(), "shop".into());
    assert_eq!(pool(&compose), "shop");
    assert_eq!(spec("").pool, "web-1");
}

#[test]
fn an_unusable_default_pool_name_asks_for_a_pool_label() {
    let mut compose = labels("enable=true");
    compose.insert(COMPOSE_SERVICE_LABEL.into(), "web/1".into());
    let Parsed::Invalid(e) = run("wharf", &compose, &[], false).parsed else {
        panic!()
    };
    let expected = concat!(
        "wharf.pool=\"web/1\": the compose service is not a pool name: ",
        "invalid character '/' (allowed: A-Z a-z 0-9 _ . -); set wharf.pool"
    );
    assert_eq!(
        e[0].to_string(),
        expected,
        "LabelError displays as label=\"value\": reason"
    );
}

#[test]
fn pool_names_have_at_most_64_characters() {
    assert_eq!(spec(&format!("pool={}", "p".repeat(64))).pool.len(), 64);
    assert!(reason(&format!("pool={}", "p".repeat(65))).contains("1 to 64"));
}

#[test]
fn the_port_defaults_to_the_only_exposed_port_else_80() {
    let port = |ports: &[u16]| match run("wharf", &labels("enable=1"), ports, false) {
        LabelOutcome {
            parsed: Parsed::Member(s),
            warnings,
        } => (s.port, warnings),
        other => panic!("{other:?}"),
    };
    assert_eq!(port(&[3000]), (3000, vec![]));
    assert_eq!(port(&[]), (80, vec![]));
    assert_eq!(port(&[80, 443]), (80, vec![]));
    let warning = "exposes ports [8080, 9090] but has no wharf.port: using 80".to_string();
    assert_eq!(port(&[8080, 9090]), (80, vec![warning]));
}

#[test]
fn every_error_of_a_container_is_reported_together() {
    let errors = errors("port=http;weight=-1;host=a:1;balance=x;retries=99;enable=maybe");
    let labels: Vec<&str> = errors.iter().map(|e| e.label.as_str()).collect();
    let expected = "wharf.enable wharf.port wharf.weight wharf.host wharf.balance wharf.retries";
    assert_eq!(
        labels.join(" "),
        expected,
        "in the order of labels.md, whatever the map order"
    );
}

#[test]
fn unknown_labels_warn_with_a_suggestion() {
    let out = enabled("prot=80;Pool=x;zzz=1;health=/up");
    let expected = [
        "unknown label wharf.Pool (did you mean wharf.pool?)",
        "unknown label wharf.health (did you mean wharf.health.path?)",
        "unknown label wharf.prot (did you mean wharf.port?)",
        "unknown label wharf.zzz",
    ];
    assert_eq!(
        (matches!(out.parsed, Parsed::Member(_)), out.warnings),
        (true, expected.map(String::from).to_vec())
    );
    let out = outcome("enabel=true");
    assert_eq!(out.parsed, Parsed::NotMember);
    assert_eq!(
        out.warnings[0],
        "unknown label wharf.enabel (did you mean wharf.enable?)"
    );
}

#[test]
fn labels_that_cannot_take_effect_warn() {
    let warnings = |labels: &str, enable: bool| {
        let out = if enable { enabled(labels) } else { outcome(labels) };
        out.warnings
    };
    assert_eq!(
        warnings("port=8080", false),
        ["wharf.* labels ignored: neither wharf.enable=true nor wharf.pool"]
    );
    assert_eq!(
        warnings("strip_prefix=true", true),
        ["wharf.strip_prefix has no effect without wharf.path"]
    );
    let expected = [
        "wharf.health.interval ignored without wharf.health.path",
        "wharf.health.fall ignored without wharf.health.path",
    ];
    assert_eq!(warnings("health.interval=bad;health.fall=2", true), expected);
    assert_eq!(spec("health.interval=bad").pool_opts.health, None);
}

#[test]
fn labels_of_other_namespaces_are_ignored() {
    let mut all = labels("enable=true");
    for key in "traefik.port wharfish.port wharf com.example.wharf.port".split(' ') {
        all.insert(key.into(), "x".into());
    }
    assert_eq!(run("wharf", &all, &[], false), enabled(""));
}

#[test]
fn a_different_prefix_changes_every_key() {
    let mut acme = labels_in("acme", "pool=shop;port=x;prot=1");
    acme.insert("wharf.enable".into(), "false".into());
    let out = run("acme", &acme, &[], false);
    let Parsed::Invalid(errors) = out.parsed else { panic!() };
    assert_eq!(errors[0].label, "acme.port");
    assert_eq!(out.warnings, ["unknown label acme.prot (did you mean acme.port?)"]);
    assert_eq!(
        differences(&PoolOptions::default(), &spec("retries=0").pool_opts, "acme"),
        ["acme.retries"]
    );
}

#[test]
fn differences_name_each_disagreeing_pool_wide_label() {
    let base = spec("health.path=/up").pool_opts;
    assert!(differences(&base, &base.clone(), "wharf").is_empty());
    let other = spec(concat!(
        "host=a.com;path=/x;strip_prefix=1;balance=p2c;sticky=cookie;protocol=h2c;",
        "health.path=/up;health.rise=5;slow_start=1s;retries=0;tls=off;https_redirect=1;hsts=1d;connect=1"
    ));
    let keys =
        "host path strip_prefix balance sticky protocol health.rise slow_start retries tls https_redirect hsts connect";
    let expected: Vec<String> = keys.split(' ').map(|k| format!("wharf.{k}")).collect();
    assert_eq!(differences(&base, &other.pool_opts, "wharf"), expected);
    assert_eq!(
        differences(&base, &PoolOptions::default(), "wharf"),
        ["wharf.health.path"]
    );
    let members = spec("port=81;weight=0;network=n").pool_opts;
    assert!(
        differences(&members, &PoolOptions::default(), "wharf").is_empty(),
        "per-member labels are not pool-wide"
    );
}

#[test]
fn hostile_values_never_panic() {
    let values = concat!(
        "| |é|\u{0}|-1|99999999999999999999999|1e400s|..|*|:|,|*.|cookie:|/\u{7f}|NaNs|",
        "/\u{1F600}|a:b:c|[::1]:80|cookie:cookie:x|1h-1s|.|0.0.0s|*.*|,,|/;/"
    );
    for label in KNOWN_LABELS {
        for value in values.split('|') {
            let mut all = labels("enable=on");
            all.insert(format!("wharf.{label}"), value.into());
            let _ = run("wharf", &all, &[1, 2], true);
        }
    }
}

#[test]
fn thousands_of_unknown_labels_name_five_count_the_rest_and_parse_in_linear_time() {
    let mut all = labels("pool=web");
    for i in 0..2_000 {
        all.insert(format!("wharf.stray{i:04}"), "x".repeat(100));
    }
    let started = std::time::Instant::now();
    let out = run("wharf", &all, &[80], false);
    let took = started.elapsed();
    assert!(matches!(out.parsed, Parsed::Member(_)));
    assert_eq!(out.warnings.len(), 6, "{:?}", out.warnings);
    assert_eq!(out.warnings[5], "1995 more unknown wharf.* labels");
    eprintln!("2,000 unknown labels parsed in {took:?}");
}

#[test]
fn a_huge_bad_label_value_is_echoed_only_as_a_short_prefix() {
    let huge = "h".repeat(60 * 1024) + " bad";
    for key in ["host", "port", "balance", "path"] {
        let mut l = labels("enable=true");
        l.insert(format!("wharf.{key}"), huge.clone());
        let o = run("wharf", &l, &[80], false);
        let Parsed::Invalid(errs) = o.parsed else {
            panic!("{key}: a 60 KiB value was accepted")
        };
        for e in &errs {
            assert!(e.value.len() < 200, "{key}: value echoed at {} bytes", e.value.len());
            assert!(e.reason.len() < 400, "{key}: reason echoed at {} bytes", e.reason.len());
            assert!(e.value.contains("61444 bytes in all"), "{key}: {}", e.value);
        }
        let shown: usize = o.warnings.iter().map(String::len).sum();
        assert!(shown < 2_000, "{key}: warnings {shown} bytes");
    }
}
