//! `leasehold.v1.Resources`: validate, find the current term's state, call it, map the
//! answer. Every call goes to the leader (liveness and orphans are its to know); a follower
//! redirects like every write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use leasehold::v1::resources_server::Resources;
use leasehold::v1::{
    CreateGroupRequest, CreateResourceRequest, DeleteGroupRequest, DeleteGroupResponse, DeleteResourceRequest,
    GetResourceRequest, ListGroupsRequest, ListGroupsResponse, ListResourcesRequest, ListResourcesResponse, Resource,
    ResourceGroup, ResourceState as WireState,
};
use leasehold_core::keeper::{MAX_MIN_MEMBERS, ResourceState, validate_properties, validate_resource_name};
use leasehold_store::{GroupRow, ResourceRow};
use tonic::{Request, Response, Status};

use crate::ha::Ha;
use crate::metadata_keeper::MetadataKeeper;
use crate::metadata_leader::{MetadataError, MetadataLeader};
use crate::metrics;
use crate::resource_keeper::ResourceKeeper;
use crate::status::invalid_argument;

/// The `Resources` service of one coordinator.
#[derive(Debug, Clone)]
pub struct ResourcesService {
    ha: Ha,
    keeper: MetadataKeeper,
    resources: Arc<ResourceKeeper>,
}

impl ResourcesService {
    /// The service over `ha`'s terms, with the resource keeper's settings and memory.
    pub fn new(ha: Ha, keeper: MetadataKeeper, resources: Arc<ResourceKeeper>) -> Self {
        Self { ha, keeper, resources }
    }

    fn leader(&self) -> Result<Arc<MetadataLeader>, Status> {
        self.keeper.active(&self.ha)
    }

    fn message(&self, row: ResourceRow, live: &BTreeSet<String>) -> Resource {
        resource_message(&self.resources, row, live)
    }
}

/// A resource as `ListResources` (and the status page) shows it: its row, whether a data node
/// of it is live (`live`: the ids of live resources), and since when the keeper sees it orphaned.
pub(crate) fn resource_message(keeper: &ResourceKeeper, row: ResourceRow, live: &BTreeSet<String>) -> Resource {
    let orphan_since = keeper.orphan_since(&row.id);
    let state = match row.state {
        ResourceState::Active => WireState::Active,
        ResourceState::Cleaning => WireState::Cleaning,
    };
    Resource {
        live: live.contains(&row.id),
        orphan: orphan_since.is_some(),
        orphan_since_ms: orphan_since.unwrap_or_default(),
        id: row.id,
        group: row.group,
        container: row.container,
        properties: row.properties.into_iter().collect(),
        process: row.process.into_iter().collect(),
        start_time_ms: row.start_time_ms.unwrap_or_default(),
        state: state as i32,
        attempts: row.attempts,
        last_attempt_ms: row.last_attempt_ms.unwrap_or_default(),
        attempt_id: row.attempt_id,
        last_error: row.last_error,
    }
}

fn name(field: &'static str, value: &str) -> Result<(), Status> {
    validate_resource_name(field, value).map_err(|message| invalid_argument(field, message))
}

fn properties(
    field: &'static str,
    given: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, Status> {
    let properties: BTreeMap<String, String> = given.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
    validate_properties(field, &properties).map_err(|message| invalid_argument(field, message))?;
    Ok(properties)
}

fn group_message(row: GroupRow) -> ResourceGroup {
    ResourceGroup {
        name: row.name,
        container: row.container,
        min_members: row.min_members,
        properties: row.properties.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl Resources for ResourcesService {
    async fn create_group(&self, request: Request<CreateGroupRequest>) -> Result<Response<ResourceGroup>, Status> {
        let result = async {
            let group = request.into_inner().group.ok_or_else(|| invalid_argument("group", "a group is required"))?;
            name("group.name", &group.name)?;
            name("group.container", &group.container)?;
            if group.min_members > MAX_MIN_MEMBERS {
                return Err(invalid_argument("group.min_members", format!("at most {MAX_MIN_MEMBERS}")));
            }
            if !self.resources.containers.contains(&group.container) {
                return Err(MetadataError::UnknownContainer { container: group.container }.into());
            }
            let row = GroupRow {
                name: group.name,
                container: group.container,
                min_members: group.min_members,
                properties: properties("group.properties", &group.properties)?,
                created_at_ms: 0,
            };
            self.leader()?.create_group(&row).await?;
            Ok(Response::new(group_message(row)))
        }
        .await;
        metrics::record("CreateGroup", result)
    }

    async fn list_groups(&self, _request: Request<ListGroupsRequest>) -> Result<Response<ListGroupsResponse>, Status> {
        let result = async {
            let (groups, _) = self.leader()?.resources().await?;
            Ok(Response::new(ListGroupsResponse { groups: groups.into_iter().map(group_message).collect() }))
        }
        .await;
        metrics::record("ListGroups", result)
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            name("name", &request.name)?;
            self.leader()?.delete_group(&request.name).await?;
            Ok(Response::new(DeleteGroupResponse {}))
        }
        .await;
        metrics::record("DeleteGroup", result)
    }

    async fn create_resource(&self, request: Request<CreateResourceRequest>) -> Result<Response<Resource>, Status> {
        let result = async {
            let request = request.into_inner();
            name("id", &request.id)?;
            name("group", &request.group)?;
            let properties = properties("properties", &request.properties)?;
            let leader = self.leader()?;
            let row = leader.create_resource(&request.id, &request.group, &properties).await?;
            self.resources.intents.notify_waiters();
            Ok(Response::new(self.message(row, &leader.live_resources())))
        }
        .await;
        metrics::record("CreateResource", result)
    }

    async fn list_resources(
        &self,
        request: Request<ListResourcesRequest>,
    ) -> Result<Response<ListResourcesResponse>, Status> {
        let result = async {
            let group = request.into_inner().group;
            if !group.is_empty() {
                name("group", &group)?;
            }
            let leader = self.leader()?;
            let (_, rows) = leader.resources().await?;
            let live = leader.live_resources();
            let resources = rows
                .into_iter()
                .filter(|row| group.is_empty() || row.group == group)
                .map(|row| self.message(row, &live))
                .collect();
            Ok(Response::new(ListResourcesResponse { resources }))
        }
        .await;
        metrics::record("ListResources", result)
    }

    async fn get_resource(&self, request: Request<GetResourceRequest>) -> Result<Response<Resource>, Status> {
        let result = async {
            let id = request.into_inner().id;
            name("id", &id)?;
            let leader = self.leader()?;
            let row = leader.resource(&id).await?.ok_or(MetadataError::NoSuchResource { resource: id })?;
            Ok(Response::new(self.message(row, &leader.live_resources())))
        }
        .await;
        metrics::record("GetResource", result)
    }

    async fn delete_resource(&self, request: Request<DeleteResourceRequest>) -> Result<Response<Resource>, Status> {
        let result = async {
            let id = request.into_inner().id;
            name("id", &id)?;
            let leader = self.leader()?;
            let row = leader.mark_cleaning(&id).await?;
            tracing::info!(resource = %id, "resource marked for cleanup by request: stop, deregister, delete follow");
            self.resources.intents.notify_waiters();
            Ok(Response::new(self.message(row, &leader.live_resources())))
        }
        .await;
        metrics::record("DeleteResource", result)
    }
}
