//! `leasehold ctl resources`: resource groups and the processes the leader's keeper runs.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use leasehold::Client;
use leasehold::v1::resources_client::ResourcesClient;
use leasehold::v1::{
    CreateGroupRequest, CreateResourceRequest, DeleteGroupRequest, DeleteResourceRequest, GetResourceRequest,
    ListGroupsRequest, ListResourcesRequest, Resource, ResourceGroup, ResourceState,
};
use serde_json::{Value, json};

use crate::args::ResourcesCommand;
use crate::ctl::leader_call;
use crate::output::{Answer, enum_json, pairs, table};

const GROUP_HEADER: [&str; 4] = ["GROUP", "CONTAINER", "MIN MEMBERS", "PROPERTIES"];
const RESOURCE_HEADER: [&str; 9] =
    ["ID", "GROUP", "CONTAINER", "STATE", "LIVE", "ORPHAN", "ATTEMPTS", "PID", "LAST ERROR"];
/// How much of a last error the list shows; `show` prints all of it.
const ERROR_WIDTH: usize = 60;

pub async fn resources(client: &Client, command: ResourcesCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        ResourcesCommand::Groups => {
            let response =
                leader_call!(client, ResourcesClient, list_groups, ListGroupsRequest {}, "listing resource groups");
            Answer {
                json: json!({ "groups": response.groups.iter().map(group_json).collect::<Vec<_>>() }),
                table: table(&GROUP_HEADER, response.groups.iter().map(group_row).collect()),
            }
        }
        ResourcesCommand::List { group } => {
            let what = group
                .as_ref()
                .map_or_else(|| "listing resources".to_owned(), |g| format!("listing resources of group {g}"));
            let request = ListResourcesRequest { group: group.unwrap_or_default() };
            let response = leader_call!(client, ResourcesClient, list_resources, request, what);
            Answer {
                json: json!({ "resources": response.resources.iter().map(resource_json).collect::<Vec<_>>() }),
                table: table(&RESOURCE_HEADER, response.resources.iter().map(resource_row).collect()),
            }
        }
        ResourcesCommand::Show { id } => {
            let request = GetResourceRequest { id: id.clone() };
            let resource = leader_call!(client, ResourcesClient, get_resource, request, format!("resource {id}"));
            Answer { json: resource_json(&resource), table: details(&resource) }
        }
        ResourcesCommand::CreateGroup { name, container, min_members, properties } => {
            let group = ResourceGroup {
                name: name.clone(),
                container,
                min_members,
                properties: properties.into_iter().collect(),
            };
            let request = CreateGroupRequest { group: Some(group) };
            let group = leader_call!(client, ResourcesClient, create_group, request, format!("creating group {name}"));
            Answer { json: group_json(&group), table: table(&GROUP_HEADER, vec![group_row(&group)]) }
        }
        ResourcesCommand::DeleteGroup { name } => {
            let request = DeleteGroupRequest { name: name.clone() };
            leader_call!(client, ResourcesClient, delete_group, request, format!("deleting group {name}"));
            Answer { json: json!({ "deleted": name }), table: format!("deleted group {name}\n") }
        }
        ResourcesCommand::Create { id, group, properties } => {
            let request = CreateResourceRequest { id: id.clone(), group, properties: properties.into_iter().collect() };
            let resource =
                leader_call!(client, ResourcesClient, create_resource, request, format!("creating resource {id}"));
            Answer { json: resource_json(&resource), table: table(&RESOURCE_HEADER, vec![resource_row(&resource)]) }
        }
        ResourcesCommand::Delete { id } => {
            let request = DeleteResourceRequest { id: id.clone() };
            let resource =
                leader_call!(client, ResourcesClient, delete_resource, request, format!("deleting resource {id}"));
            let note = format!(
                "resource {id} is {}: the keeper stops its process, deregisters its data node, then removes it\n",
                state_name(resource.state)
            );
            Answer {
                json: resource_json(&resource),
                table: note + &table(&RESOURCE_HEADER, vec![resource_row(&resource)]),
            }
        }
    })
}

fn group_row(group: &ResourceGroup) -> Vec<String> {
    vec![group.name.clone(), group.container.clone(), group.min_members.to_string(), dash(pairs(&group.properties))]
}

fn group_json(group: &ResourceGroup) -> Value {
    json!({
        "name": group.name,
        "container": group.container,
        "min_members": group.min_members,
        "properties": group.properties,
    })
}

fn state_name(value: i32) -> &'static str {
    match ResourceState::try_from(value) {
        Ok(ResourceState::Active) => "ACTIVE",
        Ok(ResourceState::Cleaning) => "CLEANING",
        _ => "UNSPECIFIED",
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes".into() } else { "no".into() }
}

fn dash(text: String) -> String {
    if text.is_empty() { "-".into() } else { text }
}

/// The answer carries store-clock times and no "now", so an orphan's age cannot be told
/// without mixing in this machine's clock: the list shows since when, as the store wrote it.
fn orphan_text(resource: &Resource) -> String {
    if resource.orphan { format!("since {}ms", resource.orphan_since_ms) } else { "no".into() }
}

/// `text` cut to `width` characters, with an ellipsis when it was longer.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A store-clock time (ms since the epoch) with its UTC rendering, or `-` when unset.
fn timestamp(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => {
            format!("{ms}ms ({})", humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)))
        }
        _ => "-".into(),
    }
}

fn resource_row(resource: &Resource) -> Vec<String> {
    vec![
        resource.id.clone(),
        resource.group.clone(),
        resource.container.clone(),
        state_name(resource.state).into(),
        yes_no(resource.live),
        orphan_text(resource),
        resource.attempts.to_string(),
        resource.process.get("pid").cloned().unwrap_or_else(|| "-".into()),
        dash(cut(&resource.last_error, ERROR_WIDTH)),
    ]
}

/// Every field of a resource, one per line.
fn details(resource: &Resource) -> String {
    let rows = [
        ("ID", resource.id.clone()),
        ("GROUP", resource.group.clone()),
        ("CONTAINER", resource.container.clone()),
        ("STATE", state_name(resource.state).into()),
        ("LIVE", yes_no(resource.live)),
        ("ORPHAN", yes_no(resource.orphan)),
        ("ORPHAN SINCE", if resource.orphan { timestamp(resource.orphan_since_ms) } else { "-".into() }),
        ("ATTEMPTS", resource.attempts.to_string()),
        ("ATTEMPT ID", dash(resource.attempt_id.clone())),
        ("STARTED", timestamp(resource.start_time_ms)),
        ("LAST ATTEMPT", timestamp(resource.last_attempt_ms)),
        ("LAST ERROR", dash(resource.last_error.clone())),
        ("PROPERTIES", dash(pairs(&resource.properties))),
        ("PROCESS", dash(pairs(&resource.process))),
    ];
    table(&["FIELD", "VALUE"], rows.into_iter().map(|(field, value)| vec![field.to_owned(), value]).collect())
}

fn resource_json(resource: &Resource) -> Value {
    json!({
        "id": resource.id,
        "group": resource.group,
        "container": resource.container,
        "state": enum_json::<ResourceState>(resource.state),
        "live": resource.live,
        "orphan": resource.orphan,
        "orphan_since_ms": resource.orphan_since_ms,
        "attempts": resource.attempts,
        "attempt_id": resource.attempt_id,
        "start_time_ms": resource.start_time_ms,
        "last_attempt_ms": resource.last_attempt_ms,
        "last_error": resource.last_error,
        "properties": resource.properties,
        "process": resource.process,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource() -> Resource {
        Resource {
            id: "r1".into(),
            group: "g".into(),
            container: "k8s".into(),
            properties: [("port".to_owned(), "7501".to_owned())].into_iter().collect(),
            process: [("pid".to_owned(), "4242".to_owned()), ("log".to_owned(), "r1.log".to_owned())]
                .into_iter()
                .collect(),
            start_time_ms: 1_000,
            state: ResourceState::Active as i32,
            live: false,
            orphan: true,
            orphan_since_ms: 2_000,
            attempts: 2,
            last_attempt_ms: 3_000,
            attempt_id: "a1".into(),
            last_error: "x".repeat(100),
        }
    }

    #[test]
    fn the_list_row_shows_pid_orphan_and_a_cut_error() {
        let row = resource_row(&resource());
        assert_eq!(row[..8], ["r1", "g", "k8s", "ACTIVE", "no", "since 2000ms", "2", "4242"]);
        assert_eq!(row[8].chars().count(), ERROR_WIDTH);
        assert!(row[8].ends_with('…'));
        let live = Resource {
            live: true,
            orphan: false,
            process: Default::default(),
            last_error: String::new(),
            ..resource()
        };
        assert_eq!(resource_row(&live)[4..], ["yes", "no", "2", "-", "-"]);
    }

    #[test]
    fn show_prints_every_field_with_times_in_utc() {
        let text = details(&resource());
        for expected in [
            "STARTED       1000ms (1970-01-01T00:00:01.000Z)",
            "ORPHAN SINCE  2000ms (1970-01-01T00:00:02.000Z)",
            "LAST ATTEMPT  3000ms (1970-01-01T00:00:03.000Z)",
            "PROPERTIES    port=7501",
            "PROCESS       log=r1.log,pid=4242",
            "ATTEMPT ID    a1",
            &format!("LAST ERROR    {}", "x".repeat(100)),
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
    }

    #[test]
    fn unset_times_and_unknown_states_print_plainly() {
        assert_eq!(timestamp(0), "-");
        assert_eq!(state_name(99), "UNSPECIFIED");
        assert_eq!(cut("short", ERROR_WIDTH), "short");
    }
}
