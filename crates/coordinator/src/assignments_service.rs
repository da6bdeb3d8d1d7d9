//! `leasehold.v1.Assignments`: validate, find the current term's state, call it, map the
//! answer. Every call goes to the leader; a follower redirects like every write.

use std::collections::BTreeMap;

use leasehold::status::status_of;
use leasehold::v1::assignments_server::Assignments;
use leasehold::v1::{
    Assignment, BucketMove, CreatePoolRequest, DeletePoolRequest, DeletePoolResponse, GetAssignmentRequest,
    ListPoolsRequest, ListPoolsResponse, MemberBuckets, OwnedBucketEpoch, Pool, RebalanceRequest,
};
use leasehold_core::buckets::Slot;
use leasehold_core::buckets::{validate_bucket_count, validate_pool_name};
use leasehold_core::contact::NodeKey;
use leasehold_store::Store;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::ha::Ha;
use crate::metadata_keeper::MetadataKeeper;
use crate::metadata_leader::{MetadataError, MetadataLeader, PoolView};
use crate::metrics;

/// The `Assignments` service of one coordinator.
#[derive(Debug, Clone)]
pub struct AssignmentsService {
    ha: Ha,
    keeper: MetadataKeeper,
    store: Store,
    default_bucket_count: u32,
}

impl AssignmentsService {
    /// The service over `ha`'s terms; a pool created without a count gets
    /// `default_bucket_count` buckets.
    pub fn new(ha: Ha, keeper: MetadataKeeper, store: Store, default_bucket_count: u32) -> Self {
        Self { ha, keeper, store, default_bucket_count }
    }

    fn leader(&self) -> Result<std::sync::Arc<MetadataLeader>, Status> {
        self.keeper.active(&self.ha)
    }
}

fn pool_name(field: &str, name: &str) -> Result<(), Status> {
    validate_pool_name(field, name).map_err(|error| status_of(&error))
}

/// The pool `name` as the leader holds it now.
pub(crate) fn assignment_of(leader: &MetadataLeader, name: &str) -> Result<Assignment, Status> {
    let view = leader.pool_view(name).ok_or_else(|| status_of(&MetadataError::NoSuchPool { pool: name.to_owned() }))?;
    Ok(assignment_message(name, view))
}

/// The pool `name` as the store holds it, for a hot follower: `live` and the pool's members
/// are the leader's to know, so they are left empty.
async fn assignment_from_store(store: &Store, cluster: &str, name: &str) -> Result<Assignment, Status> {
    let store_error = |error: leasehold_store::StoreError| status_of(&MetadataError::from(error));
    let pool = store
        .run("list pools", async |db| db.list_pools(cluster).await)
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|pool| pool.name == name)
        .ok_or_else(|| status_of(&MetadataError::NoSuchPool { pool: name.to_owned() }))?;
    let mut slots = vec![Slot::default(); pool.bucket_count as usize];
    for row in store
        .run("list assignments", async |db| db.list_assignments(cluster).await)
        .await
        .map_err(store_error)?
        .into_iter()
        .filter(|row| row.pool == name)
    {
        if let Some(slot) = slots.get_mut(row.bucket as usize) {
            let owner = (!row.node_id.is_empty()).then(|| NodeKey::new(row.node_id, row.incarnation));
            *slot = Slot { owner, epoch: row.epoch, revoke: row.revoke_version };
        }
    }
    let version = store.run("read version", async |db| db.current_version(cluster).await).await.map_err(store_error)?;
    Ok(assignment_message(name, PoolView { slots, live: Vec::new(), version, deleting: pool.deleting }))
}

fn assignment_message(name: &str, view: PoolView) -> Assignment {
    let (slots, live, version) = (view.slots, view.live, view.version);
    let mut members: BTreeMap<NodeKey, Vec<OwnedBucketEpoch>> =
        live.iter().map(|key| (key.clone(), Vec::new())).collect();
    let mut revoking = Vec::new();
    let mut unowned = Vec::new();
    for (bucket, slot) in slots.iter().enumerate() {
        let bucket = bucket as u32;
        match (&slot.owner, slot.revoke) {
            (None, _) => unowned.push(bucket),
            (Some(owner), Some(revoke_version)) => revoking.push(BucketMove {
                bucket,
                from_node_id: owner.node_id.clone(),
                epoch: slot.epoch,
                revoke_version,
            }),
            (Some(owner), None) => {
                members.entry(owner.clone()).or_default().push(OwnedBucketEpoch { bucket, epoch: slot.epoch })
            }
        }
    }
    Assignment {
        pool: Some(Pool {
            name: name.to_owned(),
            bucket_count: slots.len() as u32,
            members: live.iter().map(|key| key.node_id.clone()).collect(),
            deleting: view.deleting,
        }),
        members: members
            .into_iter()
            .map(|(key, buckets)| MemberBuckets {
                live: live.contains(&key),
                node_id: key.node_id,
                incarnation: key.incarnation,
                buckets,
            })
            .collect(),
        revoking,
        unowned,
        version,
    }
}

type AssignmentStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Assignment, Status>> + Send>>;

/// How often a watch looks for a change of its pool.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[tonic::async_trait]
impl Assignments for AssignmentsService {
    type WatchAssignmentStream = AssignmentStream;

    async fn watch_assignment(
        &self,
        request: Request<GetAssignmentRequest>,
    ) -> Result<Response<Self::WatchAssignmentStream>, Status> {
        let pool = request.into_inner().pool;
        pool_name("pool", &pool)?;
        let leader = self.leader()?;
        let first = assignment_of(&leader, &pool)?;
        let (sender, receiver) = mpsc::channel(8);
        tokio::spawn(async move {
            // Unchanged when everything but the version is the same.
            let same = |a: &Assignment, b: &Assignment| {
                (&a.pool, &a.members, &a.revoking, &a.unowned) == (&b.pool, &b.members, &b.revoking, &b.unowned)
            };
            let mut last = first.clone();
            if sender.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                    _ = leader.token().cancelled() => {
                        let ended = MetadataError::TermEnded { term: leader.term() };
                        let _ = sender.send(Err(status_of(&ended))).await;
                        return;
                    }
                    _ = sender.closed() => return,
                }
                match assignment_of(&leader, &pool) {
                    Ok(now) if same(&now, &last) => {}
                    Ok(now) => {
                        last = now.clone();
                        if sender.send(Ok(now)).await.is_err() {
                            return;
                        }
                    }
                    // The pool was deleted.
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        metrics::record(
            "WatchAssignment",
            Ok(Response::new(Box::pin(ReceiverStream::new(receiver)) as AssignmentStream)),
        )
    }

    async fn create_pool(&self, request: Request<CreatePoolRequest>) -> Result<Response<Pool>, Status> {
        let result = async {
            let request = request.into_inner();
            pool_name("name", &request.name)?;
            let bucket_count = if request.bucket_count == 0 { self.default_bucket_count } else { request.bucket_count };
            validate_bucket_count("bucket_count", bucket_count).map_err(|error| status_of(&error))?;
            let leader = self.leader()?;
            leader.create_pool(&request.name, bucket_count).await.map_err(|error| status_of(&error))?;
            Ok(Response::new(assignment_of(&leader, &request.name)?.pool.unwrap_or_default()))
        }
        .await;
        metrics::record("CreatePool", result)
    }

    async fn delete_pool(&self, request: Request<DeletePoolRequest>) -> Result<Response<DeletePoolResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            pool_name("name", &request.name)?;
            self.leader()?.delete_pool(&request.name).await.map_err(|error| status_of(&error))?;
            Ok(Response::new(DeletePoolResponse {}))
        }
        .await;
        metrics::record("DeletePool", result)
    }

    async fn list_pools(&self, _request: Request<ListPoolsRequest>) -> Result<Response<ListPoolsResponse>, Status> {
        let result = (|| {
            let leader = self.leader()?;
            let pools = leader
                .pool_names()
                .iter()
                .filter_map(|name| assignment_of(&leader, name).ok().and_then(|assignment| assignment.pool))
                .collect();
            Ok(Response::new(ListPoolsResponse { pools }))
        })();
        metrics::record("ListPools", result)
    }

    async fn get_assignment(&self, request: Request<GetAssignmentRequest>) -> Result<Response<Assignment>, Status> {
        let result = async {
            let request = request.get_ref();
            pool_name("pool", &request.pool)?;
            match self.leader() {
                Ok(leader) => Ok(Response::new(assignment_of(&leader, &request.pool)?)),
                // A hot follower answers from the store; any other follower redirects.
                Err(not_leading) => {
                    if self.ha.is_leader_now() || self.ha.check_reads().is_err() {
                        return Err(not_leading);
                    }
                    let cluster = &self.ha.settings().cluster;
                    Ok(Response::new(assignment_from_store(&self.store, cluster, &request.pool).await?))
                }
            }
        }
        .await;
        metrics::record("GetAssignment", result)
    }

    async fn rebalance(&self, request: Request<RebalanceRequest>) -> Result<Response<Assignment>, Status> {
        let result = async {
            let request = request.into_inner();
            pool_name("pool", &request.pool)?;
            let leader = self.leader()?;
            leader.bucket_pass(&request.pool).await.map_err(|error| status_of(&error))?;
            Ok(Response::new(assignment_of(&leader, &request.pool)?))
        }
        .await;
        metrics::record("Rebalance", result)
    }
}
