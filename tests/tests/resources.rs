//! The resource keeper against the real binary, driven through `ctl resources` as an operator
//! drives it.

use std::time::Duration;

use leasehold_tests::{Scratch, TestCluster, TestStore, ctl, eventually, phase, serial};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

/// An external container (its processes belong to something else, so the keeper never
/// starts or stops them) and a keeper that passes every 500 ms, so that a cleanup asked for
/// finishes within a second.
const CONFIG: &str = r#"
[containers.k8s]
kind = "external"

[resources.auto-restart]
interval = "500ms"
grace-period = "1s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_creates_shows_and_deletes_groups_and_resources() {
    let _serial = serial().await;
    let scratch = Scratch::new();
    let config = scratch.path().join("coordinator.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.start("c1", &["--config", config.to_str().unwrap()], &[]).await;
    let endpoints = cluster.leader_address().await;
    let endpoints = endpoints.as_str();
    let json = |args: &'static [&'static str]| ctl::json(BIN, endpoints, args);

    phase("a group in a container the coordinators do not configure is refused");
    let (code, stderr) = json(&["resources", "create-group", "g", "--container", "nope"]).await.unwrap_err();
    assert_ne!(code, 0);
    assert!(stderr.contains("creating group g") && stderr.contains("no container nope is configured"), "{stderr}");
    let groups = json(&["resources", "groups"]).await.unwrap();
    assert_eq!(groups["groups"], serde_json::json!([]), "nothing was created");

    phase("create a group and a resource in it");
    let group = json(&["resources", "create-group", "g", "--container", "k8s", "--min-members", "0"]).await.unwrap();
    assert_eq!(group, serde_json::json!({ "name": "g", "container": "k8s", "min_members": 0, "properties": {} }));
    let groups = json(&["resources", "groups"]).await.unwrap();
    assert_eq!(groups["groups"], serde_json::json!([group]));
    let created = json(&["resources", "create", "r1", "--group", "g", "--property", "port=7501"]).await.unwrap();
    assert_eq!(
        (created["id"].as_str(), created["state"].as_str()),
        (Some("r1"), Some("RESOURCE_STATE_ACTIVE")),
        "{created}"
    );

    phase("list and show it, as JSON and as tables");
    let listed = json(&["resources", "list"]).await.unwrap();
    let [listed] = listed["resources"].as_array().unwrap().as_slice() else { panic!("one resource: {listed}") };
    let shown = json(&["resources", "show", "r1"]).await.unwrap();
    assert_eq!(listed, &shown, "list and show answer the same resource");
    for (field, expected) in [
        ("id", serde_json::json!("r1")),
        ("group", serde_json::json!("g")),
        ("container", serde_json::json!("k8s")),
        ("state", serde_json::json!("RESOURCE_STATE_ACTIVE")),
        ("properties", serde_json::json!({ "port": "7501" })),
        // An external container's processes are started elsewhere: nothing recorded, no
        // data node registered, no restart attempted.
        ("process", serde_json::json!({})),
        ("live", serde_json::json!(false)),
        ("attempts", serde_json::json!(0)),
        ("last_error", serde_json::json!("")),
    ] {
        assert_eq!(shown[field], expected, "{field} of {shown}");
    }
    assert!(!shown["attempt_id"].as_str().unwrap().is_empty(), "creating it asked for a first start: {shown}");
    for field in ["orphan", "orphan_since_ms", "start_time_ms", "last_attempt_ms"] {
        assert!(shown.get(field).is_some(), "{field} missing from {shown}");
    }
    let of_group = json(&["resources", "list", "--group", "g"]).await.unwrap();
    assert_eq!(of_group["resources"], serde_json::json!([shown]));
    let of_other = json(&["resources", "list", "--group", "other"]).await.unwrap();
    assert_eq!(of_other["resources"], serde_json::json!([]));
    let table = ctl::table(BIN, endpoints, &["resources", "list"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split("  ").filter(|cell| !cell.is_empty()).map(str::trim).collect();
    assert_eq!(header, ["ID", "GROUP", "CONTAINER", "STATE", "LIVE", "ORPHAN", "ATTEMPTS", "PID", "LAST ERROR"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..5], ["r1", "g", "k8s", "ACTIVE", "no"], "{table}");
    let table = ctl::table(BIN, endpoints, &["resources", "show", "r1"]).await;
    for expected in
        ["ID            r1", "CONTAINER     k8s", "STATE         ACTIVE", "PROPERTIES    port=7501", "PROCESS       -"]
    {
        assert!(table.contains(expected), "{expected:?} missing from:\n{table}");
    }

    phase("a group with a resource cannot be deleted");
    let (code, stderr) = json(&["resources", "delete-group", "g"]).await.unwrap_err();
    assert_ne!(code, 0);
    assert!(stderr.contains("still has 1 resources"), "{stderr}");

    phase("delete the resource: CLEANING at once, gone once the keeper has finished");
    let deleted = json(&["resources", "delete", "r1"]).await.unwrap();
    assert_eq!(
        (deleted["id"].as_str(), deleted["state"].as_str()),
        (Some("r1"), Some("RESOURCE_STATE_CLEANING")),
        "{deleted}"
    );
    let stderr = eventually("show r1 answers NOT_FOUND", Duration::from_secs(10), || async move {
        json(&["resources", "show", "r1"]).await.err()
    })
    .await;
    assert!(stderr.1.contains("no resource r1"), "{stderr:?}");
    let (code, _) = json(&["resources", "delete", "r1"]).await.unwrap_err();
    assert_ne!(code, 0, "deleting it again is an error");

    phase("delete the group");
    let deleted = json(&["resources", "delete-group", "g"]).await.unwrap();
    assert_eq!(deleted, serde_json::json!({ "deleted": "g" }));
    let groups = json(&["resources", "groups"]).await.unwrap();
    assert_eq!(groups["groups"], serde_json::json!([]));
}
