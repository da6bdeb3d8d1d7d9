//! The coordinator's status page: `GET /` (server-rendered HTML that refreshes itself) and
//! `GET /api/v1/status` (the same data as JSON), on the metrics port. Read-only, and not for
//! the open internet: it names every node and address of the cluster.
//!
//! Every coordinator serves it and shows what it knows. The registry of coordinators is in
//! the store, so every node lists it; data nodes, pools and resources are the leader's to
//! know, so a follower says who leads instead; procedures are read from the store on a node
//! that serves reads. The data comes from the same places the gRPC listings answer from
//! ([`crate::ha::Ha::listing`], the term's [`MetadataLeader`], the store), never from a call
//! to this node's own gRPC port.
//!
//! - [`report`]: the report and its JSON field names.
//! - [`html`]: renders a report as the page.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{HeaderName, StatusCode, header};
use axum::routing::get;
use leasehold_core::HaRole;
use leasehold_core::procedure::State;
use leasehold_store::Store;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::assignments_service::assignment_of;
use crate::catalog_service::procedure_message;
use crate::ha::Ha;
use crate::metadata_keeper::MetadataKeeper;
use crate::metadata_leader::MetadataLeader;
use crate::resource_keeper::ResourceKeeper;
use crate::resources_service::resource_message;

pub mod html;
pub mod report;

use report::{
    Coordinator, Coordinators, DataNodes, Leader, Pools, Procedures, Resources, Section, StatusReport, ThisNode,
};

/// How many running procedures the page lists at most.
const RUNNING_SHOWN: u32 = 100;
/// How many of the latest failed or rolled-back procedures the page lists.
const FAILURES_SHOWN: usize = 10;
/// Reports gathered at once; more requests wait (within the request timeout). Each one
/// reads the store a few times, and a page refreshes itself every few seconds.
const GATHERS_AT_ONCE: usize = 4;

/// Where the status page reads from: the same parts the gRPC services use.
#[derive(Debug, Clone)]
pub struct StatusPage {
    ha: Ha,
    keeper: MetadataKeeper,
    store: Store,
    resources: Arc<ResourceKeeper>,
}

impl StatusPage {
    /// The page over this coordinator's HA container, term state, store and resource keeper.
    pub fn new(ha: Ha, keeper: MetadataKeeper, store: Store, resources: Arc<ResourceKeeper>) -> Self {
        Self { ha, keeper, store, resources }
    }

    /// What this node knows now. The sections that read the store do so at once, each call
    /// with the store's own timeout, so a store outage makes them unavailable, not the page.
    pub async fn report(&self) -> StatusReport {
        let view = self.ha.view();
        let settings = self.ha.settings();
        let role = self.ha.role_now();
        let node = ThisNode {
            node_id: settings.node_id.clone(),
            address: settings.address.clone(),
            role: role.to_string(),
            mode: view.mode.to_string(),
            priority: view.priority,
            term: view.term,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            store_backend: self.ha.store_backend().to_string(),
        };
        let leader = if role == HaRole::Standalone {
            // A stand-alone node is its own leader, without a lease or a term.
            Leader { known: true, node_id: node.node_id.clone(), address: node.address.clone(), ..Leader::default() }
        } else {
            match &view.leader {
                Some(known) => Leader {
                    known: true,
                    node_id: known.node_id.clone(),
                    address: known.address.clone(),
                    term: known.term,
                    lease_remaining_ms: known.remaining(self.ha.clock().now()).as_millis() as i64,
                },
                None => Leader::default(),
            }
        };
        let term_state = self.keeper.active(&self.ha).map_err(|refusal| {
            if self.ha.is_leader_now() || role == HaRole::Standalone {
                // This node leads and is still loading the term's state.
                refusal.message().to_owned()
            } else {
                format!("known to the leader alone: {}", ask_the_leader(&leader))
            }
        });
        let (coordinators, procedures, resources) =
            tokio::join!(self.coordinators(), self.procedures(&leader), resources(&self.resources, &term_state));
        StatusReport {
            cluster: settings.cluster.clone(),
            node,
            leader,
            coordinators,
            data_nodes: data_nodes(&term_state),
            procedures,
            pools: pools(&term_state),
            resources,
        }
    }

    async fn coordinators(&self) -> Section<Coordinators> {
        match self.ha.listing().await {
            Ok((nodes, term)) => Section::of(Coordinators {
                term,
                nodes: nodes
                    .into_iter()
                    .map(|node| Coordinator {
                        node_id: node.node_id,
                        address: node.address,
                        mode: node.mode.map(|mode| mode.to_string()).unwrap_or_default(),
                        role: node.role.to_string(),
                        priority: node.priority,
                        alive: node.alive,
                        holds_lease: node.holds_lease,
                        last_seen_ms_ago: node.last_seen_ms_ago,
                    })
                    .collect(),
            }),
            Err(error) => Section::unavailable(format!("could not read the registry: {error}")),
        }
    }

    /// Read from the store on a node that serves reads, as `Procedures.ListProcedures` is.
    async fn procedures(&self, leader: &Leader) -> Section<Procedures> {
        if self.ha.check_reads().is_err() {
            let mode = self.ha.view().mode;
            return Section::unavailable(format!(
                "this node serves no reads in mode {mode}: {}",
                ask_the_leader(leader)
            ));
        }
        let cluster = &self.ha.settings().cluster;
        let list = |state: State, limit: u32| {
            self.store.run("list procedures", async move |db| db.list_procedures(cluster, Some(state), limit).await)
        };
        let (running, failed, rolled_back) = tokio::join!(
            list(State::Running, RUNNING_SHOWN),
            list(State::Failed, FAILURES_SHOWN as u32),
            list(State::RolledBack, FAILURES_SHOWN as u32)
        );
        match (running, failed, rolled_back) {
            (Ok(running), Ok(failed), Ok(rolled_back)) => {
                let mut failures: Vec<_> = failed.into_iter().chain(rolled_back).collect();
                failures.sort_by_key(|row| std::cmp::Reverse(row.id));
                failures.truncate(FAILURES_SHOWN);
                let shown = |rows: Vec<_>| rows.into_iter().map(|row| procedure_message(row).into()).collect();
                Section::of(Procedures { running: shown(running), recent_failures: shown(failures) })
            }
            (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
                Section::unavailable(format!("could not read the procedures: {error}"))
            }
        }
    }
}

/// `GET /` and `GET /api/v1/status`, which answer 503 until `page` is set: the metrics port
/// serves its probes from the start, before the store is connected and the page can be built.
pub fn routes(page: Arc<OnceLock<StatusPage>>) -> Router {
    let json = page.clone();
    Router::new()
        .route(
            "/",
            get(move || async move {
                let Some(page) = page.get() else { return starting() };
                let body = html::render(&page.report().await);
                (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_STORE], body)
            }),
        )
        .route(
            "/api/v1/status",
            get(move || async move {
                let Some(page) = json.get() else { return starting() };
                match serde_json::to_string_pretty(&page.report().await) {
                    Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), NO_STORE], body),
                    Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, [TEXT, NO_STORE], format!("{error}\n")),
                }
            }),
        )
        .route_layer(GlobalConcurrencyLimitLayer::new(GATHERS_AT_ONCE))
}

const NO_STORE: (HeaderName, &str) = (header::CACHE_CONTROL, "no-store");
const TEXT: (HeaderName, &str) = (header::CONTENT_TYPE, "text/plain; charset=utf-8");

fn starting() -> (StatusCode, [(HeaderName, &'static str); 2], String) {
    (StatusCode::SERVICE_UNAVAILABLE, [TEXT, NO_STORE], "starting: connecting to the store\n".to_owned())
}

/// Where to look instead, for what only the leader knows.
fn ask_the_leader(leader: &Leader) -> String {
    if leader.known {
        format!("ask {} at {}", leader.node_id, leader.address)
    } else {
        "no leader is known now".to_owned()
    }
}

fn data_nodes(term: &Result<Arc<MetadataLeader>, String>) -> Section<DataNodes> {
    match term {
        Ok(leader) => {
            let (nodes, version) = leader.statuses();
            Section::of(DataNodes {
                version,
                fence_ms: leader.fence().as_millis() as u64,
                proceed_after_ms: leader.proceed_after().as_millis() as u64,
                nodes: nodes.into_iter().map(Into::into).collect(),
            })
        }
        Err(reason) => Section::unavailable(reason),
    }
}

fn pools(term: &Result<Arc<MetadataLeader>, String>) -> Section<Pools> {
    match term {
        Ok(leader) => Section::of(Pools {
            pools: leader
                .pool_names()
                .iter()
                .filter_map(|name| assignment_of(leader, name).ok())
                .map(Into::into)
                .collect(),
        }),
        Err(reason) => Section::unavailable(reason),
    }
}

async fn resources(keeper: &ResourceKeeper, term: &Result<Arc<MetadataLeader>, String>) -> Section<Resources> {
    let leader = match term {
        Ok(leader) => leader,
        Err(reason) => return Section::unavailable(reason),
    };
    match leader.resources().await {
        Ok((_, rows)) => {
            let live = leader.live_resources();
            Section::of(Resources {
                resources: rows.into_iter().map(|row| resource_message(keeper, row, &live).into()).collect(),
            })
        }
        Err(error) => Section::unavailable(format!("could not read the resources: {error}")),
    }
}
