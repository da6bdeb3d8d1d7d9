//! What one coordinator knows of the cluster, in the shape `GET /api/v1/status` serves and
//! the page renders. The field names are a stable interface (docs/OPERATIONS.md lists them):
//! add fields, never rename them. Times are milliseconds; `*_at_ms` and `*_since_ms` are
//! Unix times on the store's clock, `*_ms_ago`, `silent_ms` and `*_remaining_ms` are spans.

use leasehold::v1;
use serde::Serialize;

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusReport {
    /// The cluster's name.
    pub cluster: String,
    /// The coordinator that answered.
    pub node: ThisNode,
    /// The leader as this node knows it.
    pub leader: Leader,
    /// Every coordinator, from the store's registry (every node can read it).
    pub coordinators: Section<Coordinators>,
    /// The data nodes and their leases: the leader's to know.
    pub data_nodes: Section<DataNodes>,
    /// DDL procedures running, and the latest that failed or were rolled back.
    pub procedures: Section<Procedures>,
    /// Bucket pools and who owns how many buckets: the leader's to know.
    pub pools: Section<Pools>,
    /// Resources and their restart state: the leader's to know.
    pub resources: Section<Resources>,
}

/// The coordinator that answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThisNode {
    /// Its node id.
    pub node_id: String,
    /// Its advertised gRPC address.
    pub address: String,
    /// `leader`, `follower`, `starting`, `standalone`, …
    pub role: String,
    /// `auto`, `master`, `standby`, `hot-standby`, `hot-backup` or `disabled`.
    pub mode: String,
    /// Its election priority.
    pub priority: i32,
    /// The term it knows.
    pub term: u64,
    /// The Leasehold version it runs.
    pub version: String,
    /// Its store's backend: `sqlite`, `postgres` or `mysql`.
    pub store_backend: String,
}

/// The leader as the answering node knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Leader {
    /// False while no leader is known; the other fields are then empty.
    pub known: bool,
    /// Its node id.
    pub node_id: String,
    /// Its gRPC address.
    pub address: String,
    /// Its term (0 for a `disabled` node, which has none).
    pub term: u64,
    /// How long its lease has left, as far as this node can tell.
    pub lease_remaining_ms: i64,
}

/// A part of the report that this node may not be able to give.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Section<T> {
    /// Whether the data below is this node's answer; when false, it is empty.
    pub available: bool,
    /// Why not, when not available (who to ask instead, or the error).
    pub reason: String,
    /// The data.
    #[serde(flatten)]
    pub data: T,
}

impl<T: Default> Section<T> {
    /// A section with its data.
    pub fn of(data: T) -> Self {
        Section { available: true, reason: String::new(), data }
    }

    /// A section this node cannot give, and why.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Section { available: false, reason: reason.into(), data: T::default() }
    }
}

/// Every coordinator of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coordinators {
    /// The lease's term.
    pub term: u64,
    /// Each coordinator, in node-id order.
    pub nodes: Vec<Coordinator>,
}

/// One coordinator.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coordinator {
    /// Its node id.
    pub node_id: String,
    /// Its gRPC address.
    pub address: String,
    /// Its mode (empty when unknown to this version).
    pub mode: String,
    /// `leader`, `follower`, `starting`, `stopped` (shut down cleanly) or `lost` (stopped
    /// renewing otherwise).
    pub role: String,
    /// Its election priority.
    pub priority: i32,
    /// Refreshed within one lease TTL and not stopped.
    pub alive: bool,
    /// It holds the unexpired lease.
    pub holds_lease: bool,
    /// Since it last refreshed its registry row.
    pub last_seen_ms_ago: i64,
}

/// The data nodes, as the leader sees their leases.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataNodes {
    /// The metadata version the leader holds.
    pub version: u64,
    /// `T_fence`: how long a data node serves after its last successful heartbeat.
    pub fence_ms: u64,
    /// `T_proceed`: silent this long, a node has fenced whatever its clock did.
    pub proceed_after_ms: u64,
    /// Each incarnation that counts for broadcasts, in node-id order.
    pub nodes: Vec<DataNode>,
}

/// One data-node incarnation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataNode {
    /// Its node id.
    pub node_id: String,
    /// Its process incarnation.
    pub incarnation: String,
    /// The address the leader pushes to.
    pub address: String,
    /// False for a deregistered or replaced incarnation kept until it is settled.
    pub registered: bool,
    /// For such a tombstone, `left` (it deregistered) or `lost` (evicted, replaced or removed
    /// by an operator); empty while registered.
    pub departure: String,
    /// `live`, `fenced` (silent past `proceed_after_ms`: it has fenced by now), `unknown`
    /// (not heard from since this leader took over) or `never-granted`.
    pub lease: String,
    /// Since the leader last granted it a lease.
    pub silent_ms: i64,
    /// The highest version it acknowledged.
    pub acked_version: u64,
    /// The resource it registered as, if any.
    pub resource_id: String,
}

/// DDL procedures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Procedures {
    /// Every procedure still running, newest first.
    pub running: Vec<Procedure>,
    /// The latest procedures that failed or were rolled back, newest first.
    pub recent_failures: Vec<Procedure>,
}

/// One procedure, as `Procedures.ListProcedures` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Procedure {
    /// Its id.
    pub id: u64,
    /// What it does (`create_table`, …).
    pub kind: String,
    /// What it works on (`db.t`, …).
    pub target: String,
    /// The step it reached.
    pub step: String,
    /// `running`, `succeeded`, `rolled_back` or `failed`.
    pub state: String,
    /// Why it failed or was rolled back.
    pub error: String,
    /// The client's request id, if it gave one.
    pub request_id: String,
    /// The term that last moved it.
    pub term: u64,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it last moved.
    pub updated_at_ms: i64,
}

/// Bucket pools.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pools {
    /// Each pool, by name.
    pub pools: Vec<Pool>,
}

/// One pool and how its buckets are spread.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pool {
    /// Its name.
    pub name: String,
    /// How many buckets it has.
    pub bucket_count: u32,
    /// Being deleted.
    pub deleting: bool,
    /// Each member, and each departed owner still holding buckets.
    pub members: Vec<PoolMember>,
    /// Buckets being moved: revoked from their owner, not yet granted again.
    pub moving: u32,
    /// Buckets nobody owns.
    pub unowned: u32,
}

/// One member of a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PoolMember {
    /// Its node id.
    pub node_id: String,
    /// Its incarnation.
    pub incarnation: String,
    /// A live member of the pool now.
    pub live: bool,
    /// How many buckets it owns.
    pub buckets: u32,
}

/// Resources the coordinators start and restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resources {
    /// Each resource, by id.
    pub resources: Vec<Resource>,
}

/// One resource and its restart state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resource {
    /// Its id (also its data node's node id).
    pub id: String,
    /// Its group.
    pub group: String,
    /// The container that runs it.
    pub container: String,
    /// `active` or `cleaning`.
    pub state: String,
    /// A data node of it is live.
    pub live: bool,
    /// No live data node: the keeper will restart it.
    pub orphan: bool,
    /// Since when it is an orphan (0 when it is not).
    pub orphan_since_ms: i64,
    /// Restart attempts since it was last live.
    pub attempts: u32,
    /// When the last attempt was made (0: none).
    pub last_attempt_ms: i64,
    /// The last attempt's error, if it failed.
    pub last_error: String,
}

/// How the page and the JSON name a data node's lease status.
pub fn lease_name(status: i32) -> &'static str {
    match v1::DataNodeLeaseStatus::try_from(status) {
        Ok(v1::DataNodeLeaseStatus::Live) => "live",
        Ok(v1::DataNodeLeaseStatus::FencedByNow) => "fenced",
        Ok(v1::DataNodeLeaseStatus::Unknown) => "unknown",
        Ok(v1::DataNodeLeaseStatus::NeverGranted) => "never-granted",
        Ok(v1::DataNodeLeaseStatus::Unspecified) | Err(_) => "unspecified",
    }
}

impl From<v1::DataNodeStatus> for DataNode {
    fn from(node: v1::DataNodeStatus) -> Self {
        DataNode {
            lease: lease_name(node.status).to_owned(),
            node_id: node.node_id,
            incarnation: node.incarnation,
            address: node.address,
            registered: node.registered,
            departure: node.departure,
            silent_ms: node.silent_ms,
            acked_version: node.acked_version,
            resource_id: node.resource_id,
        }
    }
}

impl From<v1::Procedure> for Procedure {
    fn from(procedure: v1::Procedure) -> Self {
        Procedure {
            id: procedure.id,
            kind: procedure.kind,
            target: procedure.target,
            step: procedure.step,
            state: procedure.state,
            error: procedure.error,
            request_id: procedure.request_id,
            term: procedure.term,
            created_at_ms: procedure.created_at_ms,
            updated_at_ms: procedure.updated_at_ms,
        }
    }
}

impl From<v1::Assignment> for Pool {
    fn from(assignment: v1::Assignment) -> Self {
        let pool = assignment.pool.unwrap_or_default();
        Pool {
            name: pool.name,
            bucket_count: pool.bucket_count,
            deleting: pool.deleting,
            members: assignment
                .members
                .into_iter()
                .map(|member| PoolMember {
                    buckets: member.buckets.len() as u32,
                    node_id: member.node_id,
                    incarnation: member.incarnation,
                    live: member.live,
                })
                .collect(),
            moving: assignment.revoking.len() as u32,
            unowned: assignment.unowned.len() as u32,
        }
    }
}

impl From<v1::Resource> for Resource {
    fn from(resource: v1::Resource) -> Self {
        let state = match v1::ResourceState::try_from(resource.state) {
            Ok(v1::ResourceState::Active) => "active",
            Ok(v1::ResourceState::Cleaning) => "cleaning",
            Ok(v1::ResourceState::Unspecified) | Err(_) => "unspecified",
        };
        Resource {
            id: resource.id,
            group: resource.group,
            container: resource.container,
            state: state.to_owned(),
            live: resource.live,
            orphan: resource.orphan,
            orphan_since_ms: resource.orphan_since_ms,
            attempts: resource.attempts,
            last_attempt_ms: resource.last_attempt_ms,
            last_error: resource.last_error,
        }
    }
}
