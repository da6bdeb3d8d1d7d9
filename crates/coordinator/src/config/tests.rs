//! The configuration's validation, key by key.

use super::*;

#[test]
fn listen_addresses_may_name_a_host() {
    let config = CoordinatorConfig {
        listen: "localhost:7400".into(),
        metrics_listen: "localhost:7490".into(),
        ..CoordinatorConfig::default()
    };
    assert_eq!(config.validate().map_err(|error| error.to_string()), Ok(()));
}

#[test]
fn defaults_validate() {
    CoordinatorConfig::default().validate().unwrap();
    assert_eq!(CoordinatorConfig::default().effective_node_id(), "coordinator-7400");
    assert_eq!(CoordinatorConfig::default().ha_timings().renew_interval, Duration::from_secs(2));
    assert_eq!(CoordinatorConfig::default().ha_timings().store_timeout, Duration::from_millis(500));
}

#[test]
fn a_two_second_lease_defaults_to_timings_that_survive_two_failed_renewals() {
    let mut config = CoordinatorConfig::default();
    config.ha.lease_ttl = Duration::from_secs(2);
    let timings = config.ha_timings();
    assert_eq!(timings.renew_interval.as_millis(), 666);
    assert_eq!(timings.store_timeout, Duration::from_millis(250));
    config.validate().unwrap();
    config.ha.store_timeout = Some(Duration::from_millis(500));
    assert_eq!(config.validate().unwrap_err().key, "ha.renew-interval");
}

#[test]
fn each_bad_setting_names_its_key() {
    type Mutation = Box<dyn Fn(&mut CoordinatorConfig)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|c| c.node_id = Some("bad id".into())), "node-id"),
        (Box::new(|c| c.cluster = String::new()), "cluster"),
        (Box::new(|c| c.listen = "localhost".into()), "listen"),
        (Box::new(|c| c.metrics_listen = "nope".into()), "metrics-listen"),
        (Box::new(|c| c.advertise_address = Some("http://x".into())), "advertise-address"),
        (Box::new(|c| c.store.url = "redis://user:secret@h".into()), "store.url"),
        (Box::new(|c| c.store.max_connections = 1), "store.max-connections"),
        (
            Box::new(|c| {
                c.store.url = "postgres://u:inline@h/db".into();
                c.store.password_file = Some("password".into());
            }),
            "store.password-file",
        ),
        (Box::new(|c| c.store.password_file = Some("password".into())), "store.password-file"),
        (Box::new(|c| c.ha.renew_interval = Some(Duration::from_secs(5))), "ha.renew-interval"),
        (Box::new(|c| c.ha.margin = Duration::from_secs(10)), "ha.margin"),
        (Box::new(|c| c.metadata.clock_drift = 2.0), "metadata.clock-drift"),
        (Box::new(|c| c.metadata.heartbeat_timeout = Duration::from_secs(2)), "metadata.heartbeat-timeout"),
        (Box::new(|c| c.metadata.heartbeat_interval = Duration::from_secs(6)), "metadata.heartbeat-interval"),
        (Box::new(|c| c.metadata.lease_fence = Duration::from_secs(9)), "metadata.lease-fence"),
        (Box::new(|c| c.broadcast.budget = Some(Duration::from_secs(5))), "broadcast.budget"),
        (Box::new(|c| c.datanodes.evict_after = Duration::from_secs(5)), "datanodes.evict-after"),
        (Box::new(|c| c.assign.offline_timeout = Duration::from_secs(1)), "assign.offline-timeout"),
        (Box::new(|c| c.assign.bucket_count = 0), "assign.bucket-count"),
        (Box::new(|c| c.assign.bucket_count = 65_537), "assign.bucket-count"),
        (Box::new(|c| c.assign.interval = Duration::ZERO), "assign.interval"),
        (
            Box::new(|c| c.assign.pools = vec![PoolConfig { name: "select".into(), bucket_count: None }]),
            "assign.pools[0]",
        ),
        (
            Box::new(|c| {
                let pool = PoolConfig { name: "p".into(), bucket_count: Some(8) };
                c.assign.pools = vec![pool.clone(), pool];
            }),
            "assign.pools[1]",
        ),
        (
            Box::new(|c| c.assign.pools = vec![PoolConfig { name: "p".into(), bucket_count: Some(0) }]),
            "assign.pools[0]",
        ),
    ];
    for (mutate, key) in cases {
        let mut config = CoordinatorConfig::default();
        mutate(&mut config);
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, key, "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}

#[test]
fn unknown_keys_and_modes_are_refused_when_parsed() {
    let unknown = serde_json::from_str::<CoordinatorConfig>(r#"{"ha": {"lease-tll": "1s"}}"#);
    assert!(unknown.unwrap_err().to_string().contains("lease-tll"));
    let mode = serde_json::from_str::<CoordinatorConfig>(r#"{"ha": {"mode": "leader"}}"#);
    assert!(mode.unwrap_err().to_string().contains("unknown HA mode"));
    let parsed: CoordinatorConfig =
        serde_json::from_str(r#"{"ha": {"mode": "hot-standby", "lease-ttl": "2s", "renew-interval": "500ms"}}"#)
            .unwrap();
    assert_eq!(parsed.ha.mode, HaMode::HotStandby);
    assert_eq!(parsed.ha_timings().renew_interval, Duration::from_millis(500));
}

#[test]
fn debug_output_hides_the_store_password() {
    let mut config = CoordinatorConfig::default();
    config.store.url = "postgres://u:secret@h/db".into();
    let shown = format!("{config:?}");
    assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
    assert!(!shown.contains("secret"), "{shown}");
}
