//! Configuration resolution: precedence, defaults, and errors that name their source.

use std::fmt;
use std::time::Duration;

use ferrops_net::{FrameLimits, TransportMode};

use super::*;

mod job_shape;

/// An environment of `pairs`, with a cluster secret unless `pairs` says how to authenticate.
fn env(pairs: &[(&str, &str)]) -> EnvMap {
    let mut map = bare_env(pairs);
    if ![ENV_SECRET, ENV_SECRET_FILE, ENV_INSECURE]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        map.insert(ENV_SECRET.into(), "test-secret".into());
    }
    map
}

/// An environment of exactly `pairs`.
fn bare_env(pairs: &[(&str, &str)]) -> EnvMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The environment of a job whose scheduler is at `scheduler`, with `servers` servers and
/// `workers` workers.
fn cluster_env(scheduler: &str, servers: &str, workers: &str) -> EnvMap {
    env(&[
        (ENV_SCHEDULER, scheduler),
        (ENV_NUM_SERVERS, servers),
        (ENV_NUM_WORKERS, workers),
    ])
}

fn secret(text: &str) -> ferrops_net::auth::ClusterKey {
    ferrops_net::auth::ClusterKey::Secret(ferrops_net::auth::Secret::new(text).unwrap())
}

fn file(text: &str) -> ConfigFile {
    ConfigFile {
        origin: "job.toml".to_string(),
        text: text.to_string(),
    }
}

/// What a role's configuration is resolved from: `overrides`, the environment `env` and `file`.
fn input(overrides: &Overrides, env: &EnvMap, file: Option<&ConfigFile>) -> ConfigInput {
    ConfigInput {
        overrides: overrides.clone(),
        env: env.clone(),
        file: file.cloned(),
    }
}

/// The worker configuration from no flags, the environment `env` and `file`.
fn worker(env: &EnvMap, file: Option<&ConfigFile>) -> Result<WorkerConfig> {
    input(&Overrides::default(), env, file).worker()
}

fn error_text(result: Result<impl fmt::Debug>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

/// Asserts that a worker configuration from no flags, the environment `pairs` and (when given)
/// the config file job.toml holding `file_text` fails with an error that names each of `wanted`.
fn assert_worker_error(pairs: &[(&str, &str)], file_text: Option<&str>, wanted: &[&str]) {
    let config = file_text.map(file);
    let err = error_text(worker(&env(pairs), config.as_ref()));
    for w in wanted {
        assert!(err.contains(w), "{err}");
    }
}

/// Sets `name` to `value` in `env`; a server's configuration must then be refused naming the
/// variable and its value, and saying `says`.
fn assert_env_refused(env: &mut EnvMap, name: &str, value: &str, says: &str) {
    env.insert(name.into(), value.into());
    let err = error_text(input(&Overrides::default(), env, None).server());
    assert!(
        err.contains(name) && err.contains(value) && err.contains(says),
        "{err}"
    );
}

/// Asserts that resolving with `flags` alone (no environment, no file) through `config` fails
/// with an error that names each of `wanted`.
fn assert_flags_error<T: fmt::Debug>(
    config: fn(&ConfigInput) -> Result<T>,
    flags: &Overrides,
    wanted: &[&str],
) {
    let err = error_text(config(&input(flags, &env(&[]), None)));
    for w in wanted {
        assert!(err.contains(w), "{err}");
    }
}

const FULL_FILE: &str = r#"
    scheduler = "10.0.0.1:9000"
    num_servers = 4
    num_workers = 8
    bind = "10.0.0.1:9000"
    secret = "s3cret"
    connect_timeout_ms = 5000
    [limits]
    max_keys_bytes = 1024
"#;

#[test]
fn file_alone_fills_every_setting() {
    let cfg = input(
        &Overrides::default(),
        &bare_env(&[]),
        Some(&file(FULL_FILE)),
    )
    .scheduler()
    .unwrap();
    assert_eq!(cfg.bind, "10.0.0.1:9000".parse().unwrap());
    assert_eq!(cfg.cluster.scheduler, "10.0.0.1:9000".parse().unwrap());
    assert_eq!((cfg.cluster.num_servers, cfg.cluster.num_workers), (4, 8));
    assert_eq!(cfg.cluster.key, secret("s3cret"));
    assert_eq!(cfg.cluster.connect_timeout, Duration::from_millis(5000));
    assert_eq!(cfg.cluster.limits.max_keys_bytes, 1024);
    let defaults = FrameLimits::default();
    assert_eq!(
        cfg.cluster.limits.max_values_bytes,
        defaults.max_values_bytes
    );
    assert_eq!(cfg.cluster.limits.max_extra_bytes, defaults.max_extra_bytes);
}

#[test]
fn environment_beats_file() {
    let env = env(&[
        (ENV_NUM_SERVERS, "2"),
        (ENV_SCHEDULER, "127.0.0.1:7000"),
        (ENV_SECRET, "from-env"),
    ]);
    let cfg = worker(&env, Some(&file(FULL_FILE))).unwrap();
    assert_eq!(cfg.cluster.num_servers, 2);
    assert_eq!(cfg.cluster.num_workers, 8);
    assert_eq!(cfg.cluster.scheduler, "127.0.0.1:7000".parse().unwrap());
    assert_eq!(cfg.cluster.key, secret("from-env"));
}

#[test]
fn transport_layers_like_every_setting_and_rejects_unknown_names() {
    let base = cluster_env("127.0.0.1:7000", "1", "2");
    let cfg = worker(&base, None).unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Auto);
    let from_file = Some(file("transport = \"tcp\""));
    let cfg = worker(&base, from_file.as_ref()).unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Tcp);
    let mut with_env = base.clone();
    with_env.insert(ENV_TRANSPORT.into(), "rdma".into());
    let cfg = worker(&with_env, from_file.as_ref()).unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Rdma);
    let flags = Overrides {
        transport: Some("tcp".into()),
        ..Default::default()
    };
    let cfg = input(&flags, &with_env, None).worker().unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Tcp);
    with_env.insert(ENV_TRANSPORT.into(), "infiniband".into());
    let err = worker(&with_env, None).unwrap_err().to_string();
    assert!(
        err.contains("infiniband") && err.contains(ENV_TRANSPORT),
        "{err}"
    );
}

#[test]
fn flags_beat_environment_and_file() {
    let flags = Overrides {
        num_servers: Some("3".into()),
        scheduler: Some("127.0.0.1:6000".into()),
        connect_timeout_ms: Some("250".into()),
        ..Default::default()
    };
    let env = env(&[(ENV_NUM_SERVERS, "2"), (ENV_SCHEDULER, "127.0.0.1:7000")]);
    let cfg = input(&flags, &env, Some(&file(FULL_FILE)))
        .worker()
        .unwrap();
    assert_eq!(cfg.cluster.num_servers, 3);
    assert_eq!(cfg.cluster.scheduler, "127.0.0.1:6000".parse().unwrap());
    assert_eq!(cfg.cluster.connect_timeout, Duration::from_millis(250));
}

#[test]
fn defaults_apply_without_file() {
    let env = cluster_env("127.0.0.1:7000", "1", "1");
    let cfg = input(&Overrides::default(), &env, None).server().unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(cfg.cluster.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    let defaults = FrameLimits::default();
    assert_eq!(cfg.cluster.limits.max_keys_bytes, defaults.max_keys_bytes);
}

#[test]
fn server_on_a_remote_scheduler_listens_on_the_interface_towards_it_not_everywhere() {
    let scheduler: std::net::SocketAddr = "10.1.2.3:7000".parse().unwrap();
    let env = cluster_env(&scheduler.to_string(), "1", "1");
    let cfg = input(&Overrides::default(), &env, None).server().unwrap();
    match ferrops_net::netdev::source_address_towards(scheduler) {
        // A host with a route there: the address of that interface, never the wildcard.
        Some(ip) => {
            assert_eq!(cfg.bind, std::net::SocketAddr::new(ip, 0));
            assert!(!cfg.bind.ip().is_unspecified());
        }
        // No route at all: nothing better to choose than every interface.
        None => assert_eq!(cfg.bind, "0.0.0.0:0".parse().unwrap()),
    }
}

#[test]
fn scheduler_binds_its_own_address_or_the_bind_flag() {
    let env = cluster_env("127.0.0.1:7000", "1", "1");
    let cfg = input(&Overrides::default(), &env, None)
        .scheduler()
        .unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:7000".parse().unwrap());
    let flags = Overrides {
        bind: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let cfg = input(&flags, &env, None).scheduler().unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(cfg.cluster.scheduler, "127.0.0.1:7000".parse().unwrap());
}

#[test]
fn empty_environment_variable_counts_as_unset() {
    let env = env(&[(ENV_NUM_SERVERS, ""), (ENV_SCHEDULER, "127.0.0.1:1")]);
    let cfg = worker(&env, Some(&file(FULL_FILE))).unwrap();
    assert_eq!(cfg.cluster.num_servers, 4);
}

/// Worker configurations that fail, each with the words its error must hold: a test each,
/// `name: environment, config file text => wanted`.
macro_rules! worker_error_tests {
    ($($name:ident: $env:expr, $file:expr => $wanted:expr;)*) => {$(
        #[test]
        fn $name() {
            assert_worker_error($env, $file, $wanted);
        }
    )*};
}

worker_error_tests! {
    unknown_file_key_is_named_with_the_file:
        &[], Some("num_server = 2\n") => &["job.toml", "num_server"];
    unknown_limits_key_is_an_error:
        &[], Some("[limits]\nmax_key_bytes = 2\n") => &["job.toml", "max_key_bytes"];
    non_numeric_count_names_source:
        &[(ENV_NUM_WORKERS, "four")], None => &["FERROPS_NUM_WORKERS", "`four`"];
    wrong_type_in_file_names_the_file:
        &[], Some("num_workers = \"four\"") => &["job.toml", "num_workers"];
    zero_limit_is_an_error:
        &[], Some("[limits]\nmax_values_bytes = 0") => &["limits.max_values_bytes", "job.toml"];
    secret_value_is_not_echoed_in_errors:
        &[(ENV_SECRET, "")], Some("secret = \"\"") => &["<hidden>", "secret"];
}

#[test]
fn zero_servers_from_each_source_names_that_source() {
    let flags = Overrides {
        num_servers: Some("0".into()),
        ..Default::default()
    };
    assert_flags_error(ConfigInput::worker, &flags, &["flag --num-servers", "`0`"]);

    assert_worker_error(
        &[(ENV_NUM_SERVERS, "0")],
        None,
        &["environment variable FERROPS_NUM_SERVERS"],
    );

    assert_worker_error(
        &[],
        Some("num_servers = 0"),
        &["key `num_servers` in config file job.toml"],
    );
}

#[test]
fn unparseable_address_names_source_and_value() {
    assert_worker_error(
        &[(ENV_SCHEDULER, "not-an-address")],
        None,
        &["environment variable FERROPS_SCHEDULER", "`not-an-address`"],
    );

    let flags = Overrides {
        bind: Some("1.2.3.4:99999".into()),
        ..Default::default()
    };
    assert_flags_error(
        ConfigInput::server,
        &flags,
        &["flag --bind", "1.2.3.4:99999"],
    );
}

#[test]
fn host_names_are_resolved_preferring_ipv4() {
    let env = cluster_env("localhost:7000", "1", "1");
    let cfg = worker(&env, None).unwrap();
    assert!(cfg.cluster.scheduler.ip().is_loopback());
    assert_eq!(cfg.cluster.scheduler.port(), 7000);
}

#[test]
fn missing_settings_say_how_to_set_them() {
    assert_worker_error(&[], None, &["--scheduler", ENV_SCHEDULER]);

    assert_worker_error(
        &[(ENV_SCHEDULER, "127.0.0.1:1"), (ENV_NUM_SERVERS, "1")],
        None,
        &["number of workers"],
    );

    let err = error_text(
        input(
            &Overrides::default(),
            &env(&[(ENV_NUM_SERVERS, "1"), (ENV_NUM_WORKERS, "1")]),
            None,
        )
        .scheduler(),
    );
    assert!(err.contains("--bind"), "{err}");
}

#[test]
fn role_from_environment() {
    assert_eq!(role_from_env(&env(&[])).unwrap(), None);
    assert_eq!(
        role_from_env(&env(&[(ENV_ROLE, "Server")])).unwrap(),
        Some(Role::Server)
    );
    let err = error_text(role_from_env(&env(&[(ENV_ROLE, "boss")])));
    assert!(
        err.contains("FERROPS_ROLE") && err.contains("`boss`"),
        "{err}"
    );
}

#[test]
fn config_file_comes_from_flag_then_environment() {
    let missing = std::env::temp_dir().join("ferrops-config-test-does-not-exist.toml");
    let env = env(&[(ENV_CONFIG, missing.to_str().unwrap())]);
    let err = error_text(read_config_file(&Overrides::default(), &env));
    assert!(err.contains("environment variable FERROPS_CONFIG"), "{err}");
    assert!(read_config_file(&Overrides::default(), &EnvMap::new())
        .unwrap()
        .is_none());
}

/// A job's environment with no word about authentication.
fn job_env_without_secret() -> EnvMap {
    bare_env(&[
        (ENV_SCHEDULER, "127.0.0.1:7000"),
        (ENV_NUM_SERVERS, "1"),
        (ENV_NUM_WORKERS, "1"),
    ])
}

/// `--secret-file` naming a file that holds `text` with permission bits `mode`, in a fresh
/// temporary folder (kept while the first value lives); also the file's path.
fn secret_file_flag(text: &str, mode: u32) -> (tempfile::TempDir, String, Overrides) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let path = path.to_str().unwrap().to_string();
    let flags = Overrides {
        secret_file: Some(path.clone()),
        ..Default::default()
    };
    (dir, path, flags)
}

#[test]
fn a_role_without_a_secret_refuses_to_start_and_says_how_to_give_one() {
    let env = bare_env(&[
        (ENV_SCHEDULER, "0.0.0.0:7000"),
        (ENV_NUM_SERVERS, "1"),
        (ENV_NUM_WORKERS, "1"),
    ]);
    for err in [
        error_text(input(&Overrides::default(), &env, None).scheduler()),
        error_text(input(&Overrides::default(), &env, None).server()),
        error_text(worker(&env, None)),
    ] {
        for wanted in [
            "no cluster secret",
            ENV_SECRET,
            "--secret-file",
            "--insecure",
        ] {
            assert!(err.contains(wanted), "{err}");
        }
    }
}

#[test]
fn insecure_is_explicit_from_any_source() {
    let base = [
        (ENV_SCHEDULER, "127.0.0.1:7000"),
        (ENV_NUM_SERVERS, "1"),
        (ENV_NUM_WORKERS, "1"),
    ];
    let flags = Overrides {
        insecure: Some("true".into()),
        ..Default::default()
    };
    let cfg = input(&flags, &bare_env(&base), None).worker().unwrap();
    assert!(cfg.cluster.key.is_insecure());
    let mut with_env = base.to_vec();
    with_env.push((ENV_INSECURE, "1"));
    let cfg = worker(&bare_env(&with_env), None).unwrap();
    assert!(cfg.cluster.key.is_insecure());
    let cfg = worker(&bare_env(&base), Some(&file("insecure = true"))).unwrap();
    assert!(cfg.cluster.key.is_insecure());
    // Insecure together with a secret is a contradiction, not a choice.
    let err = error_text(input(&flags, &env(&base), None).worker());
    assert!(err.contains("--insecure") && err.contains("both"), "{err}");
}

#[test]
fn a_secret_file_is_read_and_trimmed_when_only_its_owner_can_read_it() {
    let (_dir, _, flags) = secret_file_flag("file-secret\n", 0o600);
    let base = job_env_without_secret();
    let cfg = input(&flags, &base, None).worker().unwrap();
    assert_eq!(cfg.cluster.key, secret("file-secret"));
    let mut both = base.clone();
    both.insert(ENV_SECRET.into(), "other".into());
    let err = error_text(input(&flags, &both, None).worker());
    assert!(err.contains("keep one"), "{err}");
}

#[test]
fn a_secret_file_others_can_read_is_refused_like_ssh_refuses_a_key() {
    let (_dir, path, flags) = secret_file_flag("s", 0o644);
    let env = job_env_without_secret();
    let err = error_text(input(&flags, &env, None).worker());
    assert!(
        err.contains(&path) && err.contains("644") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(
        !err.contains("s\n"),
        "the file's contents are not echoed: {err}"
    );
}

#[test]
fn budgets_come_from_flags_environment_or_file_and_zero_is_refused() {
    let base = cluster_env("127.0.0.1:7000", "1", "1");
    let cfg = input(&Overrides::default(), &base, None).server().unwrap();
    assert_eq!(cfg.cluster.budgets, ferrops_net::Budgets::default());
    let text = "max_connections = 10\nreply_budget_bytes = 1000\n\
                reply_budget_total_bytes = 5000\nframe_budget_bytes = 7000";
    let cfg = input(&Overrides::default(), &base, Some(&file(text)))
        .server()
        .unwrap();
    let b = cfg.cluster.budgets;
    assert_eq!(
        (
            b.max_connections,
            b.reply_bytes_per_connection,
            b.reply_bytes_total,
            b.frame_bytes_total
        ),
        (10, 1000, 5000, 7000)
    );
    let mut with_env = base.clone();
    with_env.insert(ENV_REPLY_BUDGET_BYTES.into(), "2000".into());
    with_env.insert(ENV_MAX_CONNECTIONS.into(), "20".into());
    let flags = Overrides {
        max_connections: Some("30".into()),
        frame_budget_bytes: Some("9000".into()),
        ..Default::default()
    };
    let cfg = input(&flags, &with_env, Some(&file(text)))
        .server()
        .unwrap();
    let b = cfg.cluster.budgets;
    assert_eq!(b.max_connections, 30, "the flag wins");
    assert_eq!(
        b.reply_bytes_per_connection, 2000,
        "the environment beats the file"
    );
    assert_eq!(b.reply_bytes_total, 5000, "the file beats the default");
    assert_eq!(b.frame_bytes_total, 9000);
    assert_env_refused(
        &mut with_env,
        ENV_REPLY_BUDGET_TOTAL_BYTES,
        "0",
        "at least 1",
    );
}

#[test]
fn liveness_settings_layer_like_every_setting_with_documented_defaults() {
    use ferrops_engine::config::LivenessConfig;
    let base = cluster_env("127.0.0.1:7000", "1", "2");
    let cfg = worker(&base, None).unwrap();
    assert_eq!(cfg.cluster.liveness, LivenessConfig::default());
    let from_file =
        file("heartbeat_interval_ms = 100\nheartbeat_timeout_ms = 900\nstartup_deadline_ms = 4000");
    let mut with_env = base.clone();
    with_env.insert(ENV_HEARTBEAT_TIMEOUT_MS.into(), "800".into());
    let flags = Overrides {
        startup_deadline_ms: Some("3000".into()),
        ..Overrides::default()
    };
    let cfg = input(&flags, &with_env, Some(&from_file))
        .scheduler()
        .unwrap();
    let ms = Duration::from_millis;
    assert_eq!(
        cfg.cluster.liveness,
        LivenessConfig {
            heartbeat_interval: ms(100),
            heartbeat_timeout: ms(800),
            startup_deadline: ms(3000),
            ..LivenessConfig::default()
        },
        "interval from the file, timeout from the environment, deadline from the flag"
    );
}

#[test]
fn bad_liveness_settings_are_refused_naming_their_sources() {
    assert_worker_error(
        &[
            (ENV_SCHEDULER, "127.0.0.1:7000"),
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "1"),
            (ENV_HEARTBEAT_INTERVAL_MS, "0"),
        ],
        None,
        &["FERROPS_HEARTBEAT_INTERVAL_MS", "at least 1"],
    );
    assert_worker_error(
        &[
            (ENV_SCHEDULER, "127.0.0.1:7000"),
            (ENV_NUM_SERVERS, "1"),
            (ENV_NUM_WORKERS, "1"),
            (ENV_HEARTBEAT_TIMEOUT_MS, "1500"),
        ],
        Some("heartbeat_interval_ms = 1000"),
        &[
            "heartbeat timeout (1500 ms)",
            "twice the heartbeat interval (1000 ms)",
            "key `heartbeat_interval_ms` in config file job.toml",
            "environment variable FERROPS_HEARTBEAT_TIMEOUT_MS",
        ],
    );
    assert_flags_error(
        ConfigInput::scheduler,
        &Overrides {
            bind: Some("127.0.0.1:0".into()),
            num_servers: Some("1".into()),
            num_workers: Some("1".into()),
            startup_deadline_ms: Some("soon".into()),
            ..Overrides::default()
        },
        &["--startup-deadline-ms", "`soon`"],
    );
}

#[test]
fn the_metrics_address_comes_from_flag_env_or_file_and_every_role_gets_it() {
    let base = cluster_env("127.0.0.1:7000", "1", "1");
    let none = input(&Overrides::default(), &base, None);
    assert_eq!(
        none.worker().unwrap().cluster.metrics_addr,
        None,
        "no endpoint by default"
    );
    let text = "metrics_addr = \"127.0.0.1:9100\"";
    let from_file = input(&Overrides::default(), &base, Some(&file(text)));
    let want: std::net::SocketAddr = "127.0.0.1:9100".parse().unwrap();
    assert_eq!(from_file.server().unwrap().cluster.metrics_addr, Some(want));
    assert_eq!(
        from_file.scheduler().unwrap().cluster.metrics_addr,
        Some(want)
    );
    let mut with_env = base.clone();
    with_env.insert(ENV_METRICS_ADDR.into(), "127.0.0.1:0".into());
    let cfg = input(&Overrides::default(), &with_env, Some(&file(text)));
    let port0: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert_eq!(
        cfg.worker().unwrap().cluster.metrics_addr,
        Some(port0),
        "env beats file"
    );
    let flags = Overrides {
        metrics_addr: Some("127.0.0.1:9200".into()),
        ..Default::default()
    };
    let cfg = input(&flags, &with_env, None).worker().unwrap();
    assert_eq!(
        cfg.cluster.metrics_addr,
        Some("127.0.0.1:9200".parse().unwrap())
    );
    assert_env_refused(&mut with_env, ENV_METRICS_ADDR, "nowhere", "nowhere");
}

#[test]
fn busy_poll_layers_like_every_setting_reaches_every_role_and_refuses_nonsense() {
    let base = cluster_env("127.0.0.1:7000", "1", "1");
    let mut with_env = base.clone();
    with_env.insert(ENV_BUSY_POLL_US.into(), "75".into());
    let flag = Overrides {
        busy_poll_us: Some("20".into()),
        ..Default::default()
    };
    let (none, zero_file) = (Overrides::default(), file("busy_poll_us = 0"));
    let us = Duration::from_micros;
    // (flags, environment, file) → what the worker and the server get.
    for (flags, env, file, want) in [
        (&none, &base, None, ferrops_net::DEFAULT_BUSY_POLL),
        (&none, &base, Some(&zero_file), Duration::ZERO),
        (&none, &with_env, Some(&zero_file), us(75)),
        (&flag, &with_env, Some(&zero_file), us(20)),
    ] {
        let cfg = input(flags, env, file);
        assert_eq!(cfg.worker().unwrap().cluster.busy_poll, want);
        assert_eq!(cfg.server().unwrap().cluster.busy_poll, want);
    }
    for (bad, why) in [("-1", "whole number"), ("2000000", "at most 1000000")] {
        assert_env_refused(&mut with_env, ENV_BUSY_POLL_US, bad, why);
    }
}

#[test]
fn payload_checksum_is_off_by_default_and_layers_to_every_role() {
    let base = cluster_env("127.0.0.1:7000", "1", "1");
    let mut with_env = base.clone();
    with_env.insert(ENV_PAYLOAD_CHECKSUM.into(), "false".into());
    let flag = Overrides {
        payload_checksum: Some("true".into()),
        ..Default::default()
    };
    let (none, on_file) = (Overrides::default(), file("payload_checksum = true"));
    // (flags, environment, file) → what every role sends with.
    for (flags, env, file, want) in [
        (&none, &base, None, false),
        (&none, &base, Some(&on_file), true),
        (&none, &with_env, Some(&on_file), false),
        (&flag, &with_env, Some(&on_file), true),
    ] {
        let cfg = input(flags, env, file);
        assert_eq!(cfg.worker().unwrap().cluster.payload_checksum, want);
        assert_eq!(cfg.server().unwrap().cluster.payload_checksum, want);
        assert_eq!(cfg.scheduler().unwrap().cluster.payload_checksum, want);
    }
    assert_env_refused(
        &mut with_env,
        ENV_PAYLOAD_CHECKSUM,
        "maybe",
        "true or false",
    );
}
