//! Configuration resolution: precedence, defaults, and errors that name their source.

use std::fmt;
use std::time::Duration;

use ferrops_net::{FrameLimits, TransportMode};

use super::*;

fn env(pairs: &[(&str, &str)]) -> EnvMap {
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

fn file(text: &str) -> ConfigFile {
    ConfigFile {
        origin: "job.toml".to_string(),
        text: text.to_string(),
    }
}

fn error_text(result: Result<impl fmt::Debug>) -> String {
    format!("{:#}", result.expect_err("expected an error"))
}

/// Asserts that a worker configuration from no flags, the environment `pairs` and (when given)
/// the config file job.toml holding `file_text` fails with an error that names each of `wanted`.
fn assert_worker_error(pairs: &[(&str, &str)], file_text: Option<&str>, wanted: &[&str]) {
    let config = file_text.map(file);
    let err = error_text(worker_config(
        &Overrides::default(),
        &env(pairs),
        config.as_ref(),
    ));
    for w in wanted {
        assert!(err.contains(w), "{err}");
    }
}

/// Asserts that resolving with `flags` alone (no environment, no file) through `config` fails
/// with an error that names each of `wanted`.
fn assert_flags_error<T: fmt::Debug>(
    config: fn(&Overrides, &EnvMap, Option<&ConfigFile>) -> Result<T>,
    flags: &Overrides,
    wanted: &[&str],
) {
    let err = error_text(config(flags, &env(&[]), None));
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
    let cfg = scheduler_config(&Overrides::default(), &env(&[]), Some(&file(FULL_FILE))).unwrap();
    assert_eq!(cfg.bind, "10.0.0.1:9000".parse().unwrap());
    assert_eq!(cfg.cluster.scheduler, "10.0.0.1:9000".parse().unwrap());
    assert_eq!((cfg.cluster.num_servers, cfg.cluster.num_workers), (4, 8));
    assert_eq!(cfg.cluster.secret.as_deref(), Some("s3cret"));
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
    let cfg = worker_config(&Overrides::default(), &env, Some(&file(FULL_FILE))).unwrap();
    assert_eq!(cfg.cluster.num_servers, 2);
    assert_eq!(cfg.cluster.num_workers, 8);
    assert_eq!(cfg.cluster.scheduler, "127.0.0.1:7000".parse().unwrap());
    assert_eq!(cfg.cluster.secret.as_deref(), Some("from-env"));
}

#[test]
fn server_shards_come_from_env_or_file_and_default_to_one() {
    let base = cluster_env("127.0.0.1:7000", "1", "2");
    let cfg = worker_config(&Overrides::default(), &base, None).unwrap();
    assert_eq!(cfg.cluster.server_shards, 1);
    let mut with_env = base.clone();
    with_env.insert(ENV_SERVER_SHARDS.into(), "4".into());
    let cfg = worker_config(&Overrides::default(), &with_env, None).unwrap();
    assert_eq!(cfg.cluster.server_shards, 4);
    let cfg = worker_config(
        &Overrides::default(),
        &base,
        Some(&file("server_shards = 3")),
    )
    .unwrap();
    assert_eq!(cfg.cluster.server_shards, 3);
    with_env.insert(ENV_SERVER_SHARDS.into(), "0".into());
    assert!(worker_config(&Overrides::default(), &with_env, None).is_err());
}

#[test]
fn rank_comes_from_the_environment_only() {
    let base = cluster_env("127.0.0.1:7000", "1", "2");
    let cfg = worker_config(&Overrides::default(), &base, None).unwrap();
    assert_eq!(cfg.cluster.rank, None);
    let mut with_env = base.clone();
    with_env.insert(ENV_RANK.into(), "1".into());
    let cfg = worker_config(&Overrides::default(), &with_env, None).unwrap();
    assert_eq!(cfg.cluster.rank, Some(1));
    with_env.insert(ENV_RANK.into(), "-1".into());
    let err = error_text(worker_config(&Overrides::default(), &with_env, None));
    assert!(err.contains(ENV_RANK) && err.contains("-1"), "{err}");
    assert!(worker_config(&Overrides::default(), &base, Some(&file("rank = 1"))).is_err());
}

#[test]
fn transport_layers_like_every_setting_and_rejects_unknown_names() {
    let base = cluster_env("127.0.0.1:7000", "1", "2");
    let cfg = worker_config(&Overrides::default(), &base, None).unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Auto);
    let from_file = Some(file("transport = \"tcp\""));
    let cfg = worker_config(&Overrides::default(), &base, from_file.as_ref()).unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Tcp);
    let mut with_env = base.clone();
    with_env.insert(ENV_TRANSPORT.into(), "rdma".into());
    let cfg = worker_config(&Overrides::default(), &with_env, from_file.as_ref()).unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Rdma);
    let flags = Overrides {
        transport: Some("tcp".into()),
        ..Default::default()
    };
    let cfg = worker_config(&flags, &with_env, None).unwrap();
    assert_eq!(cfg.cluster.transport, TransportMode::Tcp);
    with_env.insert(ENV_TRANSPORT.into(), "infiniband".into());
    let err = worker_config(&Overrides::default(), &with_env, None)
        .unwrap_err()
        .to_string();
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
    let cfg = worker_config(&flags, &env, Some(&file(FULL_FILE))).unwrap();
    assert_eq!(cfg.cluster.num_servers, 3);
    assert_eq!(cfg.cluster.scheduler, "127.0.0.1:6000".parse().unwrap());
    assert_eq!(cfg.cluster.connect_timeout, Duration::from_millis(250));
}

#[test]
fn defaults_apply_without_file() {
    let env = cluster_env("127.0.0.1:7000", "1", "1");
    let cfg = server_config(&Overrides::default(), &env, None).unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(cfg.cluster.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(cfg.cluster.secret, None);
    let defaults = FrameLimits::default();
    assert_eq!(cfg.cluster.limits.max_keys_bytes, defaults.max_keys_bytes);
}

#[test]
fn server_on_a_remote_scheduler_listens_everywhere() {
    let env = cluster_env("10.1.2.3:7000", "1", "1");
    let cfg = server_config(&Overrides::default(), &env, None).unwrap();
    assert_eq!(cfg.bind, "0.0.0.0:0".parse().unwrap());
}

#[test]
fn scheduler_binds_its_own_address_or_the_bind_flag() {
    let env = cluster_env("127.0.0.1:7000", "1", "1");
    let cfg = scheduler_config(&Overrides::default(), &env, None).unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:7000".parse().unwrap());
    let flags = Overrides {
        bind: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let cfg = scheduler_config(&flags, &env, None).unwrap();
    assert_eq!(cfg.bind, "127.0.0.1:0".parse().unwrap());
    assert_eq!(cfg.cluster.scheduler, "127.0.0.1:7000".parse().unwrap());
}

#[test]
fn empty_environment_variable_counts_as_unset() {
    let env = env(&[(ENV_NUM_SERVERS, ""), (ENV_SCHEDULER, "127.0.0.1:1")]);
    let cfg = worker_config(&Overrides::default(), &env, Some(&file(FULL_FILE))).unwrap();
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
        &[], Some("secret = \"\"") => &["<hidden>", "secret"];
}

#[test]
fn zero_servers_from_each_source_names_that_source() {
    let flags = Overrides {
        num_servers: Some("0".into()),
        ..Default::default()
    };
    assert_flags_error(worker_config, &flags, &["flag --num-servers", "`0`"]);

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
    assert_flags_error(server_config, &flags, &["flag --bind", "1.2.3.4:99999"]);
}

#[test]
fn host_names_are_resolved_preferring_ipv4() {
    let env = cluster_env("localhost:7000", "1", "1");
    let cfg = worker_config(&Overrides::default(), &env, None).unwrap();
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

    let err = error_text(scheduler_config(
        &Overrides::default(),
        &env(&[(ENV_NUM_SERVERS, "1"), (ENV_NUM_WORKERS, "1")]),
        None,
    ));
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
