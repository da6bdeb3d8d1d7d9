//! Renders a [`StatusReport`] as one self-contained HTML page: inline style, a few lines of
//! inline script that fetch the page again every few seconds and swap its content in (no
//! build step, nothing loaded from elsewhere). Every value from the report is escaped: names,
//! errors and addresses come from users and from the store.
//!
//! Elements tests and scripts may rely on: `#leader-node-id`, `#leader-term`, one
//! `tr.coordinator` per coordinator and one `tr.data-node` per data-node incarnation, each
//! with `data-node-id` and (for data nodes) `data-lease`, and `body[data-refreshes]`, the
//! number of successful refreshes so far.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use super::report::{Coordinators, DataNodes, Pools, Procedure, Procedures, Resources, Section, StatusReport};

/// How often the page fetches itself again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// `text` with the characters that mean something in HTML (text or attribute) escaped.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A span of milliseconds, as people read it: `850 ms`, `3.4 s`, `2 min 5 s`, `3 h 12 min`.
pub fn span(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A Unix time in milliseconds as a UTC time to the second; `—` for 0 (never).
pub fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
        _ => "—".to_owned(),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A badge whose class is the (known, fixed) value, for colour.
fn badge(value: &str) -> String {
    format!(r#"<span class="badge {0}">{0}</span>"#, escape(value))
}

/// The whole page.
pub fn render(report: &StatusReport) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let title = format!("Leasehold · {} · {}", report.cluster, report.node.node_id);
    let _ = write!(
        page,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body data-refreshes="0">
<main id="status">
"#,
        title = escape(&title),
    );
    header(&mut page, report);
    section(&mut page, "coordinators", "Coordinators", &report.coordinators, coordinators);
    section(&mut page, "data-nodes", "Data nodes", &report.data_nodes, data_nodes);
    section(&mut page, "procedures", "Procedures", &report.procedures, procedures);
    section(&mut page, "pools", "Bucket pools", &report.pools, pools);
    section(&mut page, "resources", "Resources", &report.resources, resources);
    let _ = write!(
        page,
        r#"</main>
<footer><span id="refresh">refreshes every {every} s</span> · <a href="/api/v1/status">JSON</a> · <a href="/metrics">metrics</a></footer>
<script>{SCRIPT}</script>
</body>
</html>
"#,
        every = REFRESH_EVERY.as_secs(),
        SCRIPT = SCRIPT.replace("REFRESH_MS", &REFRESH_EVERY.as_millis().to_string()),
    );
    page
}

fn header(page: &mut String, report: &StatusReport) {
    let (node, leader) = (&report.node, &report.leader);
    let _ = write!(
        page,
        r#"<header>
<h1>Leasehold <span class="muted">cluster</span> {cluster}</h1>
<p>Answered by <b>{node_id}</b> ({address}): {role}, mode {mode}, priority {priority}; Leasehold {version} on {backend}.</p>
"#,
        cluster = escape(&report.cluster),
        node_id = escape(&node.node_id),
        address = escape(&node.address),
        role = badge(&node.role),
        mode = escape(&node.mode),
        priority = node.priority,
        version = escape(&node.version),
        backend = escape(&node.store_backend),
    );
    if leader.known {
        let _ = writeln!(
            page,
            r#"<p id="leader" class="leader">Leader <b id="leader-node-id">{node_id}</b> at {address}, term <b id="leader-term">{term}</b>{lease}.</p>"#,
            node_id = escape(&leader.node_id),
            address = escape(&leader.address),
            term = leader.term,
            lease = if leader.term > 0 {
                format!(", lease left {}", span(leader.lease_remaining_ms))
            } else {
                String::new()
            },
        );
    } else {
        page.push_str("<p id=\"leader\" class=\"warning\">No leader is known to this node now.</p>\n");
    }
    if leader.known && leader.node_id != node.node_id {
        let _ = writeln!(
            page,
            "<p class=\"note\">This node is a {role}: it shows the coordinators and what it can read itself. \
             Data nodes, pools and resources are known to the leader alone: open this page on {leader}'s metrics port.</p>",
            role = escape(&node.role),
            leader = escape(&leader.node_id),
        );
    }
    page.push_str("</header>\n");
}

fn section<T>(page: &mut String, id: &str, title: &str, part: &Section<T>, body: fn(&mut String, &T)) {
    let _ = write!(page, "<section id=\"{id}\">\n<h2>{title}</h2>\n");
    if part.available {
        body(page, &part.data);
    } else {
        let _ = writeln!(page, "<p class=\"unavailable\">{}</p>", escape(&part.reason));
    }
    page.push_str("</section>\n");
}

/// Opens a table whose head names `columns`.
fn table(page: &mut String, columns: &[&str]) {
    page.push_str("<table>\n<thead><tr>");
    for column in columns {
        let _ = write!(page, "<th>{column}</th>");
    }
    page.push_str("</tr></thead>\n<tbody>\n");
}

fn end_table(page: &mut String) {
    page.push_str("</tbody>\n</table>\n");
}

fn none(page: &mut String, what: &str) {
    let _ = writeln!(page, "<p class=\"muted\">{what}</p>");
}

fn coordinators(page: &mut String, part: &Coordinators) {
    let _ = writeln!(page, "<p>Lease term {}.</p>", part.term);
    if part.nodes.is_empty() {
        return none(page, "No coordinator is registered.");
    }
    table(page, &["node", "role", "mode", "priority", "alive", "last seen", "address"]);
    for node in &part.nodes {
        let _ = writeln!(
            page,
            r#"<tr class="coordinator" data-node-id="{node_id}" data-role="{role_value}"><td>{node_id}</td><td>{role}</td><td>{mode}</td><td>{priority}</td><td>{alive}</td><td>{seen} ago</td><td>{address}</td></tr>"#,
            node_id = escape(&node.node_id),
            role_value = escape(&node.role),
            role = badge(&node.role),
            mode = escape(&node.mode),
            priority = node.priority,
            alive = yes_no(node.alive),
            seen = span(node.last_seen_ms_ago),
            address = escape(&node.address),
        );
    }
    end_table(page);
}

fn data_nodes(page: &mut String, part: &DataNodes) {
    let _ = writeln!(
        page,
        "<p>Metadata version {version}; a data node serves for {fence} after its last heartbeat, and one silent for {proceed} has fenced.</p>",
        version = part.version,
        fence = span(part.fence_ms as i64),
        proceed = span(part.proceed_after_ms as i64),
    );
    if part.nodes.is_empty() {
        return none(page, "No data node is registered.");
    }
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for node in &part.nodes {
        match counts.iter_mut().find(|(lease, _)| *lease == node.lease) {
            Some((_, count)) => *count += 1,
            None => counts.push((&node.lease, 1)),
        }
    }
    let counts: Vec<String> = counts.iter().map(|(lease, count)| format!("{count} {}", escape(lease))).collect();
    let _ = writeln!(page, "<p id=\"data-node-counts\">{} incarnations: {}.</p>", part.nodes.len(), counts.join(", "));
    table(page, &["node", "lease", "silent for", "acked version", "registered", "incarnation", "address", "resource"]);
    for node in &part.nodes {
        let incarnation = &node.incarnation[..node.incarnation.len().min(8)];
        let _ = writeln!(
            page,
            r#"<tr class="data-node" data-node-id="{node_id}" data-lease="{lease_value}"><td>{node_id}</td><td>{lease}</td><td>{silent}</td><td>{acked}</td><td>{registered}</td><td title="{full}">{incarnation}</td><td>{address}</td><td>{resource}</td></tr>"#,
            node_id = escape(&node.node_id),
            lease_value = escape(&node.lease),
            lease = badge(&node.lease),
            silent = if node.silent_ms < 0 { "—".to_owned() } else { span(node.silent_ms) },
            acked = node.acked_version,
            registered = if node.registered {
                "yes".to_owned()
            } else {
                format!("no: {} (kept until settled)", escape(&node.departure))
            },
            full = escape(&node.incarnation),
            incarnation = escape(incarnation),
            address = escape(&node.address),
            resource = escape(&node.resource_id),
        );
    }
    end_table(page);
}

fn procedures(page: &mut String, part: &Procedures) {
    if part.running.is_empty() && part.recent_failures.is_empty() {
        return none(page, "None running, and no recent failure.");
    }
    page.push_str("<h3>Running</h3>\n");
    if part.running.is_empty() {
        none(page, "None.");
    } else {
        procedure_table(page, &part.running);
    }
    page.push_str("<h3>Recent failures</h3>\n");
    if part.recent_failures.is_empty() {
        none(page, "None.");
    } else {
        procedure_table(page, &part.recent_failures);
    }
}

fn procedure_table(page: &mut String, procedures: &[Procedure]) {
    table(page, &["id", "kind", "target", "state", "step", "term", "updated", "request id", "error"]);
    for procedure in procedures {
        let _ = writeln!(
            page,
            r#"<tr class="procedure" data-id="{id}"><td>{id}</td><td>{kind}</td><td>{target}</td><td>{state}</td><td>{step}</td><td>{term}</td><td>{updated}</td><td>{request}</td><td>{error}</td></tr>"#,
            id = procedure.id,
            kind = escape(&procedure.kind),
            target = escape(&procedure.target),
            state = badge(&procedure.state),
            step = escape(&procedure.step),
            term = procedure.term,
            updated = time(procedure.updated_at_ms),
            request = escape(&procedure.request_id),
            error = escape(&procedure.error),
        );
    }
    end_table(page);
}

fn pools(page: &mut String, part: &Pools) {
    if part.pools.is_empty() {
        return none(page, "No pool.");
    }
    table(page, &["pool", "buckets", "buckets per member", "moving", "unowned", "deleting"]);
    for pool in &part.pools {
        let members: Vec<String> = pool
            .members
            .iter()
            .map(|member| {
                let gone = if member.live { "" } else { " (gone)" };
                format!("<span class=\"member\">{} {}{gone}</span>", escape(&member.node_id), member.buckets)
            })
            .collect();
        let _ = writeln!(
            page,
            r#"<tr class="pool" data-name="{name}"><td>{name}</td><td>{count}</td><td>{members}</td><td>{moving}</td><td>{unowned}</td><td>{deleting}</td></tr>"#,
            name = escape(&pool.name),
            count = pool.bucket_count,
            members = if members.is_empty() { "—".to_owned() } else { members.join(" ") },
            moving = pool.moving,
            unowned = pool.unowned,
            deleting = yes_no(pool.deleting),
        );
    }
    end_table(page);
}

fn resources(page: &mut String, part: &Resources) {
    if part.resources.is_empty() {
        return none(page, "No resource.");
    }
    table(
        page,
        &["resource", "group", "container", "state", "live", "orphan since", "attempts", "last attempt", "last error"],
    );
    for resource in &part.resources {
        let _ = writeln!(
            page,
            r#"<tr class="resource" data-id="{id}"><td>{id}</td><td>{group}</td><td>{container}</td><td>{state}</td><td>{live}</td><td>{orphan}</td><td>{attempts}</td><td>{last}</td><td>{error}</td></tr>"#,
            id = escape(&resource.id),
            group = escape(&resource.group),
            container = escape(&resource.container),
            state = badge(&resource.state),
            live = yes_no(resource.live),
            orphan = if resource.orphan { time(resource.orphan_since_ms) } else { "—".to_owned() },
            attempts = resource.attempts,
            last = time(resource.last_attempt_ms),
            error = escape(&resource.last_error),
        );
    }
    end_table(page);
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 78em; padding: 0 1em; color: #1d2430; }
h1 { font-size: 1.5em; margin: 0 0 .3em; } h2 { font-size: 1.15em; margin: 1.4em 0 .4em; } h3 { font-size: 1em; margin: .8em 0 .3em; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .25em .7em .25em 0; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { font-weight: 600; color: #56606c; }
.muted { color: #6b7480; } .note { background: #eef4fb; padding: .5em .8em; border-radius: 4px; }
.warning, .unavailable { background: #fdf3e1; padding: .5em .8em; border-radius: 4px; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 3px; background: #e8eaed; font-size: .92em; }
.leader, .live, .active, .succeeded, .standalone { background: #dcf2e1; } .badge.leader { background: #cfe3fb; }
.fenced, .lost, .failed, .rolled_back { background: #fbdcdc; } .unknown, .starting, .cleaning, .running { background: #fdf0d0; }
p.leader { background: none; }
.member { display: inline-block; margin-right: .8em; white-space: nowrap; }
footer { margin-top: 2em; color: #6b7480; } #refresh.stale { color: #b3261e; font-weight: 600; }
";

/// Fetches the page again every few seconds and swaps its content in; on failure keeps what
/// it showed and says so.
const SCRIPT: &str = "
(() => {
  const note = document.getElementById('refresh');
  let refreshes = 0;
  setInterval(async () => {
    try {
      const answer = await fetch(location.pathname, { cache: 'no-store' });
      if (!answer.ok) throw new Error('HTTP ' + answer.status);
      const fresh = new DOMParser().parseFromString(await answer.text(), 'text/html');
      document.getElementById('status').replaceWith(fresh.getElementById('status'));
      document.body.dataset.refreshes = ++refreshes;
      note.textContent = 'refreshed at ' + new Date().toLocaleTimeString();
      note.className = '';
    } catch (error) {
      note.textContent = 'this node does not answer (' + error.message + '); showing what it said last';
      note.className = 'stale';
    }
  }, REFRESH_MS);
})();
";

#[cfg(test)]
mod tests {
    use super::super::report::*;
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            cluster: "prod".into(),
            node: ThisNode {
                node_id: "c2".into(),
                address: "10.0.0.2:7400".into(),
                role: "leader".into(),
                mode: "auto".into(),
                priority: 5,
                term: 7,
                version: "0.1.0".into(),
                store_backend: "postgres".into(),
            },
            leader: Leader {
                known: true,
                node_id: "c2".into(),
                address: "10.0.0.2:7400".into(),
                term: 7,
                lease_remaining_ms: 5400,
            },
            coordinators: Section::of(Coordinators {
                term: 7,
                nodes: vec![Coordinator {
                    node_id: "c2".into(),
                    address: "10.0.0.2:7400".into(),
                    mode: "auto".into(),
                    role: "leader".into(),
                    priority: 5,
                    alive: true,
                    holds_lease: true,
                    last_seen_ms_ago: 120,
                }],
            }),
            data_nodes: Section::of(DataNodes {
                version: 12,
                fence_ms: 15_000,
                proceed_after_ms: 16_300,
                nodes: vec![
                    DataNode {
                        node_id: "dn1".into(),
                        incarnation: "0123456789abcdef".into(),
                        address: "10.0.1.1:7500".into(),
                        registered: true,
                        departure: String::new(),
                        lease: "live".into(),
                        silent_ms: 420,
                        acked_version: 12,
                        resource_id: String::new(),
                    },
                    DataNode {
                        node_id: "dn2".into(),
                        incarnation: "fedcba9876543210".into(),
                        address: "10.0.1.2:7500".into(),
                        registered: true,
                        departure: String::new(),
                        lease: "fenced".into(),
                        silent_ms: 17_500,
                        acked_version: 11,
                        resource_id: String::new(),
                    },
                ],
            }),
            procedures: Section::of(Procedures {
                running: Vec::new(),
                recent_failures: vec![Procedure {
                    id: 9,
                    kind: "create_table".into(),
                    target: "db.<t>".into(),
                    state: "rolled_back".into(),
                    error: "dn2 refused: <script>alert(1)</script> & \"more\"".into(),
                    ..Procedure::default()
                }],
            }),
            pools: Section::of(Pools {
                pools: vec![Pool {
                    name: "ingest".into(),
                    bucket_count: 8,
                    members: vec![
                        PoolMember { node_id: "dn1".into(), live: true, buckets: 5, ..PoolMember::default() },
                        PoolMember { node_id: "dn2".into(), live: false, buckets: 3, ..PoolMember::default() },
                    ],
                    ..Pool::default()
                }],
            }),
            resources: Section::unavailable("could not read the resources: <timeout>"),
        }
    }

    #[test]
    fn escape_covers_text_and_attribute_specials() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(escape("dn-1.rack_2"), "dn-1.rack_2");
    }

    #[test]
    fn the_page_shows_the_leader_each_node_and_each_lease() {
        let page = render(&report());
        assert!(page.contains(r#"<b id="leader-node-id">c2</b>"#), "{page}");
        assert!(page.contains(r#"<b id="leader-term">7</b>"#), "{page}");
        assert!(page.contains("lease left 5.4 s"), "{page}");
        assert!(page.contains("; Leasehold 0.1.0 on postgres.</p>"), "{page}");
        assert!(page.contains(r#"<tr class="coordinator" data-node-id="c2" data-role="leader">"#), "{page}");
        assert!(page.contains(r#"<tr class="data-node" data-node-id="dn1" data-lease="live">"#), "{page}");
        assert!(page.contains(r#"<tr class="data-node" data-node-id="dn2" data-lease="fenced">"#), "{page}");
        assert!(page.contains("<td>17.5 s</td>"), "dn2's silence: {page}");
        assert!(page.contains("2 incarnations: 1 live, 1 fenced."), "{page}");
        assert!(
            page.contains(r#"<span class="member">dn1 5</span> <span class="member">dn2 3 (gone)</span>"#),
            "{page}"
        );
        assert!(!page.contains("This node is a"), "the leader has no follower note: {page}");
    }

    #[test]
    fn every_value_from_the_report_is_escaped() {
        let page = render(&report());
        assert!(!page.contains("<script>alert(1)</script>"), "{page}");
        assert!(page.contains("dn2 refused: &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;more&quot;"), "{page}");
        assert!(page.contains("<td>db.&lt;t&gt;</td>"), "{page}");
        assert!(page.contains("could not read the resources: &lt;timeout&gt;"), "{page}");
        // The only scripts are the page's own.
        assert_eq!(page.matches("<script>").count(), 1, "{page}");
    }

    #[test]
    fn a_follower_says_who_leads_and_what_it_cannot_show() {
        let mut report = report();
        report.node = ThisNode { node_id: "c1".into(), role: "follower".into(), ..report.node };
        report.data_nodes = Section::unavailable("known to the leader alone: ask c2 at 10.0.0.2:7400");
        let page = render(&report);
        assert!(page.contains("This node is a follower"), "{page}");
        assert!(page.contains(r#"<b id="leader-node-id">c2</b>"#), "{page}");
        assert!(
            page.contains("<p class=\"unavailable\">known to the leader alone: ask c2 at 10.0.0.2:7400</p>"),
            "{page}"
        );
        assert!(!page.contains("class=\"data-node\""), "{page}");
    }

    #[test]
    fn spans_and_times_read_as_people_read_them() {
        assert_eq!(span(-5), "0 ms");
        assert_eq!(span(850), "850 ms");
        assert_eq!(span(3_449), "3.4 s");
        assert_eq!(span(125_000), "2 min 5 s");
        assert_eq!(span(3 * 3_600_000 + 12 * 60_000), "3 h 12 min");
        assert_eq!(time(0), "—");
        assert_eq!(time(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_json_field_names_are_the_documented_ones() {
        let json = serde_json::to_value(report()).unwrap();
        let keys = |value: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&json),
            ["cluster", "coordinators", "data_nodes", "leader", "node", "pools", "procedures", "resources"]
        );
        assert_eq!(keys(&json["leader"]), ["address", "known", "lease_remaining_ms", "node_id", "term"]);
        assert_eq!(
            keys(&json["node"]),
            ["address", "mode", "node_id", "priority", "role", "store_backend", "term", "version"]
        );
        assert_eq!(
            keys(&json["data_nodes"]),
            ["available", "fence_ms", "nodes", "proceed_after_ms", "reason", "version"]
        );
        assert_eq!(
            keys(&json["data_nodes"]["nodes"][1]),
            [
                "acked_version",
                "address",
                "departure",
                "incarnation",
                "lease",
                "node_id",
                "registered",
                "resource_id",
                "silent_ms"
            ]
        );
        assert_eq!(json["data_nodes"]["nodes"][1]["lease"], "fenced");
        assert_eq!(keys(&json["coordinators"]), ["available", "nodes", "reason", "term"]);
        assert_eq!(keys(&json["procedures"]), ["available", "reason", "recent_failures", "running"]);
        assert_eq!(
            keys(&json["pools"]["pools"][0]),
            ["bucket_count", "deleting", "members", "moving", "name", "unowned"]
        );
        assert_eq!(keys(&json["pools"]["pools"][0]["members"][0]), ["buckets", "incarnation", "live", "node_id"]);
        assert_eq!(
            json["resources"],
            serde_json::json!({"available": false, "reason": "could not read the resources: <timeout>", "resources": []})
        );
    }
}
