//! The coordinator's status page in a real browser: a small cluster, the page loaded in
//! headless Chromium, and the DOM it rendered (after its refresh script ran) checked for the
//! leader, every data node, and one data node the leader counts as fenced; then what a
//! follower's page and the JSON at `/api/v1/status` say.

use std::time::Duration;

use leasehold::v1::assignments_client::AssignmentsClient;
use leasehold::v1::{CreatePoolRequest, DataNodeLeaseStatus, GetAssignmentRequest, ListDataNodesRequest};
use leasehold_tests::agents::data_nodes;
use leasehold_tests::browser::Browser;
use leasehold_tests::process::channel;
use leasehold_tests::store::Kind;
use leasehold_tests::{AgentLab as Lab, Node, eventually, phase, serial};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
const ELECTION: Duration = Duration::from_secs(15);
const POOL: &str = "work";
const IN_POOL: &[(&str, &str)] = &[("LEASEHOLD_AGENT_POOLS", POOL)];
/// Virtual time the page runs for in the browser: past its first refresh (every 5 s).
const SCRIPT_TIME: Duration = Duration::from_secs(7);

/// The text of the element with `id` in a serialized DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let opening = format!("id=\"{id}\">");
    let start = dom.find(&opening).unwrap_or_else(|| panic!("no #{id} in:\n{dom}")) + opening.len();
    &dom[start..start + dom[start..].find('<').expect("the element closes")]
}

/// How many times the page's script fetched the page again and swapped it in.
fn refreshes(dom: &str) -> u32 {
    let start = dom.find("data-refreshes=\"").unwrap_or_else(|| panic!("no refresh count in:\n{dom}")) + 16;
    dom[start..start + dom[start..].find('"').expect("the attribute closes")].parse().expect("a count")
}

/// The cells of the row of pool `name`.
fn pool_row<'a>(dom: &'a str, name: &str) -> &'a str {
    let opening = format!(r#"<tr class="pool" data-name="{name}">"#);
    let start = dom.find(&opening).unwrap_or_else(|| panic!("no pool {name} in:\n{dom}")) + opening.len();
    &dom[start..start + dom[start..].find("</tr>").expect("the row closes")]
}

/// Member → buckets owned, from a pool row's `<span class="member">dn1 4</span>` entries.
fn member_buckets(row: &str) -> std::collections::BTreeMap<String, u32> {
    row.split(r#"<span class="member">"#)
        .skip(1)
        .map(|entry| {
            let entry = &entry[..entry.find("</span>").expect("the entry closes")];
            let mut words = entry.split_whitespace();
            let member = words.next().expect("a member").to_owned();
            (member, words.next().and_then(|count| count.parse().ok()).expect("a bucket count"))
        })
        .collect()
}

/// The JSON a node serves at `/api/v1/status`.
async fn status_json(node: &Node) -> Option<Value> {
    let answer = node.http_get("/api/v1/status").await?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{answer}");
    Some(serde_json::from_str(body).expect("the status is JSON"))
}

fn data_node<'a>(status: &'a Value, node_id: &str) -> &'a Value {
    let nodes = status["data_nodes"]["nodes"].as_array().unwrap_or_else(|| panic!("{status:#}"));
    nodes.iter().find(|node| node["node_id"] == node_id).unwrap_or_else(|| panic!("no {node_id} in {status:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_leader_every_data_node_and_a_fenced_one_in_a_browser() {
    let Some(browser) = Browser::find("the status page's browser test") else { return };
    let _serial = serial().await;
    let agents = [("dn1", IN_POOL), ("dn2", IN_POOL), ("dn3", IN_POOL)];
    let mut lab = Lab::start(BIN, Kind::Sqlite, 2, &[], &agents).await.expect("SQLite is always there");
    let (leader, term) = lab.cluster.leader(ELECTION).await;
    let follower = if leader == "c1" { "c2" } else { "c1" };
    let address = lab.cluster.node(&leader).grpc.clone();

    phase("a pool of 12 buckets, balanced over the three agents");
    let mut pools = AssignmentsClient::new(channel(&address));
    pools.create_pool(CreatePoolRequest { name: POOL.into(), bucket_count: 12 }).await.expect("the pool");
    eventually("4 buckets each", Duration::from_secs(20), || {
        let mut pools = pools.clone();
        async move {
            let assignment = pools.get_assignment(GetAssignmentRequest { pool: POOL.into() }).await.ok()?.into_inner();
            let settled = assignment.revoking.is_empty() && assignment.unowned.is_empty();
            (settled && assignment.members.len() == 3 && assignment.members.iter().all(|m| m.buckets.len() == 4))
                .then_some(())
        }
    })
    .await;

    phase("SIGSTOP dn3 until the leader counts it fenced");
    lab.agent("dn3").node.pause();
    eventually("the leader counts dn3 fenced", Duration::from_secs(20), || {
        let mut client = data_nodes(&address, &lab.lease);
        async move {
            let listed = client.list_data_nodes(ListDataNodesRequest {}).await.ok()?.into_inner();
            let fenced = DataNodeLeaseStatus::FencedByNow as i32;
            listed.nodes.iter().any(|node| node.node_id == "dn3" && node.status == fenced).then_some(())
        }
    })
    .await;

    phase("the leader's page, as Chromium renders it");
    let leader_node = lab.cluster.node(&leader);
    let dom = browser.dom(&format!("http://{}/", leader_node.metrics), SCRIPT_TIME).await;
    assert_eq!(text_of(&dom, "leader-node-id"), leader, "{dom}");
    assert_eq!(text_of(&dom, "leader-term"), term.to_string(), "{dom}");
    assert!(refreshes(&dom) >= 1, "the page's script refreshed it: {dom}");
    for (node_id, lease) in [("dn1", "live"), ("dn2", "live"), ("dn3", "fenced")] {
        let row = format!(r#"<tr class="data-node" data-node-id="{node_id}" data-lease="{lease}">"#);
        assert!(dom.contains(&row), "{node_id} shown {lease}: {dom}");
    }
    assert!(dom.contains(r#"<span class="badge fenced">fenced</span>"#), "{dom}");
    for node_id in ["c1", "c2"] {
        assert!(dom.contains(&format!(r#"<tr class="coordinator" data-node-id="{node_id}""#)), "{node_id}: {dom}");
    }
    assert!(dom.contains(&format!(r#"<tr class="coordinator" data-node-id="{leader}" data-role="leader">"#)), "{dom}");
    // dn3's buckets move to the others once it has provably fenced; either way every bucket
    // is counted once, with its owner, as moving, or as unowned.
    let pool = pool_row(&dom, POOL);
    assert!(pool.starts_with(&format!("<td>{POOL}</td><td>12</td>")), "{pool}");
    let members = member_buckets(pool);
    assert!(members.contains_key("dn1") && members.contains_key("dn2"), "{pool}");
    let cells: Vec<&str> = pool.split("<td>").skip(4).map(|cell| cell.trim_end_matches("</td>")).collect();
    let (moving, unowned): (u32, u32) = (cells[0].parse().expect("moving"), cells[1].parse().expect("unowned"));
    assert_eq!(members.values().sum::<u32>() + moving + unowned, 12, "{pool}");

    phase("a follower's page names the leader and leaves the data nodes to it");
    let follower_node = lab.cluster.node(follower);
    let dom = browser.dom(&format!("http://{}/", follower_node.metrics), SCRIPT_TIME).await;
    assert_eq!(text_of(&dom, "leader-node-id"), leader, "{dom}");
    assert_eq!(text_of(&dom, "leader-term"), term.to_string(), "{dom}");
    assert!(dom.contains("This node is a"), "{dom}");
    assert!(dom.contains(&format!("known to the leader alone: ask {leader} at {address}")), "{dom}");
    assert!(!dom.contains("class=\"data-node\""), "{dom}");
    assert!(dom.contains(&format!(r#"<tr class="coordinator" data-node-id="{leader}" data-role="leader">"#)), "{dom}");

    phase("the JSON says the same");
    let status = status_json(leader_node).await.expect("the leader answers");
    assert_eq!(status["leader"]["node_id"], leader.as_str());
    assert_eq!(status["leader"]["term"], term);
    assert_eq!(status["node"]["role"], "leader");
    assert_eq!(data_node(&status, "dn3")["lease"], "fenced");
    let proceed_after = status["data_nodes"]["proceed_after_ms"].as_i64().expect("T_proceed");
    assert!(data_node(&status, "dn3")["silent_ms"].as_i64().expect("silent_ms") >= proceed_after, "{status:#}");
    assert_eq!(data_node(&status, "dn1")["lease"], "live");
    let pool = &status["pools"]["pools"][0];
    assert_eq!((pool["name"].as_str(), pool["bucket_count"].as_u64()), (Some(POOL), Some(12)), "{status:#}");
    let owned: u64 = pool["members"].as_array().expect("members").iter().filter_map(|m| m["buckets"].as_u64()).sum();
    let counted = owned + pool["moving"].as_u64().expect("moving") + pool["unowned"].as_u64().expect("unowned");
    assert_eq!(counted, 12, "every bucket counted once: {status:#}");
    for section in ["coordinators", "data_nodes", "procedures", "pools", "resources"] {
        assert_eq!(status[section]["available"], true, "{section}: {status:#}");
    }
    let status = status_json(follower_node).await.expect("the follower answers");
    assert_eq!(status["node"]["role"], "follower");
    assert_eq!(status["leader"]["node_id"], leader.as_str());
    assert_eq!(status["coordinators"]["available"], true, "every node reads the registry");
    for section in ["data_nodes", "pools", "resources"] {
        assert_eq!(status[section]["available"], false, "{section}: {status:#}");
    }
    let reason = status["procedures"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("serves no reads in mode auto"), "a follower in auto mode serves no reads: {status:#}");

    phase("SIGCONT dn3: it resyncs, and the page shows it live again");
    lab.agent("dn3").node.resume();
    eventually("the leader shows dn3 live", Duration::from_secs(20), || async {
        let status = status_json(lab.cluster.node(&leader)).await?;
        (data_node(&status, "dn3")["lease"] == "live").then_some(())
    })
    .await;
}
