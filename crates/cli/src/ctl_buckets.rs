//! `leasehold ctl buckets`: bucket pools and who owns which bucket.

use anyhow::Context;
use leasehold::Client;
use leasehold::v1::assignments_client::AssignmentsClient;
use leasehold::v1::{
    Assignment, CreatePoolRequest, DeletePoolRequest, GetAssignmentRequest, ListPoolsRequest, Pool, RebalanceRequest,
};
use serde_json::{Value, json};

use crate::args::{BucketsCommand, Output};
use crate::output::{Answer, table};

pub async fn buckets(client: &Client, command: BucketsCommand, output: Output) -> anyhow::Result<Answer> {
    Ok(match command {
        BucketsCommand::Pools => {
            let response = client
                .call_leader(
                    |channel| async move { AssignmentsClient::new(channel).list_pools(ListPoolsRequest {}).await },
                )
                .await
                .context("listing pools")?;
            let rows = response.pools.iter().map(pool_row).collect();
            Answer {
                json: json!({ "pools": response.pools.iter().map(pool_json).collect::<Vec<_>>() }),
                table: table(&["POOL", "BUCKETS", "MEMBERS"], rows),
            }
        }
        BucketsCommand::Show { pool } => {
            let request = GetAssignmentRequest { pool: pool.clone() };
            let assignment = client
                .call_leader(|channel| {
                    let request = request.clone();
                    async move { AssignmentsClient::new(channel).get_assignment(request).await }
                })
                .await
                .with_context(|| format!("the assignment of pool {pool}"))?;
            assignment_answer(&assignment)
        }
        BucketsCommand::Watch { pool, count } => return watch(client, &pool, count, output).await,
        BucketsCommand::CreatePool { name, buckets } => {
            let request = CreatePoolRequest { name: name.clone(), bucket_count: buckets.unwrap_or(0) };
            let pool = client
                .call_leader(|channel| {
                    let request = request.clone();
                    async move { AssignmentsClient::new(channel).create_pool(request).await }
                })
                .await
                .with_context(|| format!("creating pool {name}"))?;
            Answer { json: pool_json(&pool), table: table(&["POOL", "BUCKETS", "MEMBERS"], vec![pool_row(&pool)]) }
        }
        BucketsCommand::DeletePool { name } => {
            let request = DeletePoolRequest { name: name.clone() };
            client
                .call_leader(|channel| {
                    let request = request.clone();
                    async move { AssignmentsClient::new(channel).delete_pool(request).await }
                })
                .await
                .with_context(|| format!("deleting pool {name}"))?;
            Answer { json: json!({ "deleted": name }), table: format!("deleted pool {name}\n") }
        }
        BucketsCommand::Rebalance { pool } => {
            let request = RebalanceRequest { pool: pool.clone() };
            let assignment = client
                .call_leader(|channel| {
                    let request = request.clone();
                    async move { AssignmentsClient::new(channel).rebalance(request).await }
                })
                .await
                .with_context(|| format!("rebalancing pool {pool}"))?;
            assignment_answer(&assignment)
        }
    })
}

/// Prints every assignment of `pool` as it arrives (JSON lines under `--output json`), and
/// returns an empty answer once `count` were printed or the stream ended.
async fn watch(client: &Client, pool: &str, count: Option<usize>, output: Output) -> anyhow::Result<Answer> {
    let request = GetAssignmentRequest { pool: pool.to_owned() };
    let mut stream = client
        .call_leader(|channel| {
            let request = request.clone();
            async move { AssignmentsClient::new(channel).watch_assignment(request).await }
        })
        .await
        .with_context(|| format!("watching pool {pool}"))?;
    let json = matches!(output, Output::Json);
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        let Some(assignment) = stream.message().await.with_context(|| format!("watching pool {pool}"))? else { break };
        let answer = assignment_answer(&assignment);
        if json {
            println!("{}", serde_json::to_string(&answer.json)?);
        } else {
            println!("{}", answer.table);
        }
        printed += 1;
    }
    Ok(Answer { json: Value::Null, table: String::new() })
}

fn pool_row(pool: &Pool) -> Vec<String> {
    vec![pool.name.clone(), pool.bucket_count.to_string(), pool.members.join(",")]
}

fn pool_json(pool: &Pool) -> Value {
    json!({ "name": pool.name, "bucket_count": pool.bucket_count, "members": pool.members, "deleting": pool.deleting })
}

/// Bucket numbers as ranges: `0-3,7,9-10`.
fn ranges(buckets: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut start = None;
    for (index, bucket) in buckets.iter().enumerate() {
        let first = *start.get_or_insert(*bucket);
        if buckets.get(index + 1) != Some(&(bucket + 1)) {
            out.push(if first == *bucket { bucket.to_string() } else { format!("{first}-{bucket}") });
            start = None;
        }
    }
    out.join(",")
}

fn assignment_answer(assignment: &Assignment) -> Answer {
    let pool = assignment.pool.clone().unwrap_or_default();
    let mut rows: Vec<Vec<String>> = assignment
        .members
        .iter()
        .map(|member| {
            let buckets: Vec<u32> = member.buckets.iter().map(|owned| owned.bucket).collect();
            vec![
                member.node_id.clone(),
                member.incarnation.chars().take(8).collect(),
                if member.live { "live".into() } else { "departed".into() },
                buckets.len().to_string(),
                ranges(&buckets),
            ]
        })
        .collect();
    for moving in &assignment.revoking {
        rows.push(vec![
            moving.from_node_id.clone(),
            String::new(),
            format!("revoking at v{}", moving.revoke_version),
            "1".into(),
            moving.bucket.to_string(),
        ]);
    }
    if !assignment.unowned.is_empty() {
        rows.push(vec![
            "(unowned)".into(),
            String::new(),
            String::new(),
            assignment.unowned.len().to_string(),
            ranges(&assignment.unowned),
        ]);
    }
    let json = json!({
        "pool": pool_json(&pool),
        "version": assignment.version,
        "members": assignment.members.iter().map(|member| json!({
            "node_id": member.node_id,
            "incarnation": member.incarnation,
            "live": member.live,
            "buckets": member.buckets.iter().map(|owned| json!({ "bucket": owned.bucket, "epoch": owned.epoch })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "revoking": assignment.revoking.iter().map(|moving| json!({
            "bucket": moving.bucket,
            "from": moving.from_node_id,
            "epoch": moving.epoch,
            "revoke_version": moving.revoke_version,
        })).collect::<Vec<_>>(),
        "unowned": assignment.unowned,
    });
    let header = format!("pool {} ({} buckets) at version {}\n", pool.name, pool.bucket_count, assignment.version);
    Answer { json, table: header + &table(&["MEMBER", "INCARNATION", "STATE", "COUNT", "BUCKETS"], rows) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_lists_print_as_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[5]), "5");
    }
}
