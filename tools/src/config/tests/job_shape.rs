//! The settings that shape the job: shards per server, replication and its mode, ranks.

use super::*;

#[test]
fn server_shards_come_from_env_or_file_and_default_to_one() {
    let base = cluster_env("127.0.0.1:7000", "1", "2");
    let cfg = worker(&base, None).unwrap();
    assert_eq!(cfg.cluster.server_shards, 1);
    let mut with_env = base.clone();
    with_env.insert(ENV_SERVER_SHARDS.into(), "4".into());
    let cfg = worker(&with_env, None).unwrap();
    assert_eq!(cfg.cluster.server_shards, 4);
    let cfg = worker(&base, Some(&file("server_shards = 3"))).unwrap();
    assert_eq!(cfg.cluster.server_shards, 3);
    with_env.insert(ENV_SERVER_SHARDS.into(), "0".into());
    assert!(worker(&with_env, None).is_err());
}

#[test]
fn replication_is_layered_defaults_to_one_and_is_refused_above_the_servers() {
    let base = cluster_env("127.0.0.1:7000", "2", "2");
    assert_eq!(worker(&base, None).unwrap().cluster.replication, 1);
    let cfg = worker(&base, Some(&file("replication = 2"))).unwrap();
    assert_eq!(cfg.cluster.replication, 2);
    let mut with_env = base.clone();
    with_env.insert(ENV_REPLICATION.into(), "3".into());
    let error = format!("{:#}", worker(&with_env, None).unwrap_err());
    assert!(
        error.contains("FERROPS_REPLICATION") && error.contains("needs at least 3 servers"),
        "{error}"
    );
    with_env.insert(ENV_REPLICATION.into(), "0".into());
    let error = format!("{:#}", worker(&with_env, None).unwrap_err());
    assert!(error.contains("must be at least 1"), "{error}");
    let flags = Overrides {
        replication: Some("2".into()),
        ..Overrides::default()
    };
    let cfg = input(&flags, &base, Some(&file("replication = 5")))
        .scheduler()
        .unwrap();
    assert_eq!(cfg.cluster.replication, 2, "the flag wins over the file");
}

#[test]
fn the_replication_mode_is_layered_defaults_to_each_and_an_unknown_one_is_named() {
    use ferrops_engine::config::ReplicationMode;
    let base = cluster_env("127.0.0.1:7000", "2", "2");
    let mode =
        |env: &EnvMap, f: Option<&ConfigFile>| worker(env, f).map(|c| c.cluster.replication_mode);
    assert_eq!(mode(&base, None).unwrap(), ReplicationMode::Each);
    let aggregated = file("replication_mode = \"aggregated\"");
    assert_eq!(
        mode(&base, Some(&aggregated)).unwrap(),
        ReplicationMode::Aggregated
    );
    let mut with_env = base.clone();
    with_env.insert(ENV_REPLICATION_MODE.into(), "each".into());
    assert_eq!(
        mode(&with_env, Some(&aggregated)).unwrap(),
        ReplicationMode::Each
    );
    with_env.insert(ENV_REPLICATION_MODE.into(), "batched".into());
    let error = format!("{:#}", mode(&with_env, None).unwrap_err());
    assert!(
        error.contains("FERROPS_REPLICATION_MODE") && error.contains("`batched`"),
        "{error}"
    );
}

#[test]
fn rank_comes_from_the_environment_only() {
    let base = cluster_env("127.0.0.1:7000", "1", "2");
    let cfg = worker(&base, None).unwrap();
    assert_eq!(cfg.cluster.rank, None);
    let mut with_env = base.clone();
    with_env.insert(ENV_RANK.into(), "1".into());
    let cfg = worker(&with_env, None).unwrap();
    assert_eq!(cfg.cluster.rank, Some(1));
    with_env.insert(ENV_RANK.into(), "-1".into());
    let err = error_text(worker(&with_env, None));
    assert!(err.contains(ENV_RANK) && err.contains("-1"), "{err}");
    assert!(worker(&base, Some(&file("rank = 1"))).is_err());
}
