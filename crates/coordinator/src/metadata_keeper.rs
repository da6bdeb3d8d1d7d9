//! Hands the data-node lease state to each new term: when this coordinator becomes leader it
//! loads a [`MetadataLeader`] for the term; when the term ends the state is dropped with it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use leasehold_core::HaRole;
use leasehold_store::{Store, WriteGuard};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ha::Ha;
use crate::metadata_leader::{LeaderIdentity, LeaseSettings, MetadataError, MetadataLeader};
use crate::procedure_runner::ProcedureRunner;

fn starting() -> tonic::Status {
    crate::status::Refusal::LeaderStarting.into()
}

/// The current term's data-node state, if this coordinator leads and has loaded it.
#[derive(Debug, Default, Clone)]
pub struct MetadataKeeper {
    current: Arc<RwLock<Option<Arc<MetadataLeader>>>>,
    /// Pools from the configuration (`assign.pools`): each leader creates the missing ones.
    configured_pools: Arc<Vec<(String, u32)>>,
    /// The resource keeper every leader runs.
    resources: Option<Arc<crate::resource_keeper::ResourceKeeper>>,
}

impl MetadataKeeper {
    /// A keeper whose leaders create `pools` (name, bucket count) when the store lacks them.
    pub fn with_pools(pools: Vec<(String, u32)>) -> Self {
        Self { configured_pools: Arc::new(pools), ..Self::default() }
    }

    /// The same keeper, whose leaders also run the resource keeper `resources`.
    pub fn with_resource_keeper(self, resources: Arc<crate::resource_keeper::ResourceKeeper>) -> Self {
        Self { resources: Some(resources), ..self }
    }

    /// The loaded state of the current term, if any.
    pub fn current(&self) -> Option<Arc<MetadataLeader>> {
        self.current.read().expect("keeper poisoned").clone().filter(|leader| !leader.token().is_cancelled())
    }

    /// The current term's state, after checking right now that this node leads (a
    /// stand-alone node always does). `UNAVAILABLE` otherwise: `NOT_LEADER` with the leader's
    /// address, or `LEADER_STARTING` while the state loads.
    pub fn active(&self, ha: &Ha) -> Result<Arc<MetadataLeader>, tonic::Status> {
        if ha.settings().mode.uses_lease() {
            let permit = ha.permit()?;
            return self.current().filter(|leader| leader.term() == permit.guard.term).ok_or_else(starting);
        }
        self.current().ok_or_else(starting)
    }

    fn install(&self, leader: Option<Arc<MetadataLeader>>) {
        *self.current.write().expect("keeper poisoned") = leader;
    }

    /// The installed state, even if it was given up.
    fn installed(&self) -> Option<Arc<MetadataLeader>> {
        self.current.read().expect("keeper poisoned").clone()
    }

    /// Resolves when the installed state is given up while its term goes on.
    async fn invalidated(&self) {
        match self.installed().map(|leader| leader.token().clone()).filter(|token| !token.is_cancelled()) {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// Follows `ha` until `shutdown`: loads the state of every term this node leads.
    pub async fn run(
        self,
        ha: Ha,
        store: Store,
        settings: LeaseSettings,
        runner: Arc<ProcedureRunner>,
        shutdown: CancellationToken,
    ) {
        let node_id = ha.settings().node_id.clone();
        let address = ha.settings().address.clone();
        let cluster = ha.settings().cluster.clone();
        if !ha.settings().mode.uses_lease() {
            // Stand-alone: one "term" for the life of the process. An earlier run of this
            // process granted leases only before it stopped, which is before now.
            let identity = LeaderIdentity {
                cluster,
                node_id,
                address,
                term: 0,
                guard: WriteGuard::Standalone,
                token: shutdown.clone(),
                promoted_at: ha.clock().now(),
                earlier_grants: Duration::ZERO,
                new_term: true,
                ha: None,
            };
            self.load_until_done(identity, &store, &ha, settings, &runner, &shutdown).await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.invalidated() => {}
                }
                if let Some(given_up) = self.installed().filter(|leader| leader.is_invalidated()) {
                    given_up.quiesce().await;
                    self.load_until_done(given_up.reload_identity(), &store, &ha, settings, &runner, &shutdown).await;
                }
            }
            self.install(None);
            return;
        }
        let earlier_grants = ha.settings().timings.lease_upper_bound();
        let mut views = ha.subscribe();
        loop {
            match ha.permit() {
                Ok(permit)
                    if self
                        .installed()
                        .is_some_and(|leader| leader.term() == permit.guard.term && leader.is_invalidated()) =>
                {
                    let given_up = self.installed().expect("checked above");
                    given_up.quiesce().await;
                    self.load_until_done(given_up.reload_identity(), &store, &ha, settings, &runner, &permit.token)
                        .await;
                }
                Ok(permit) if self.current().is_none_or(|leader| leader.term() != permit.guard.term) => {
                    let identity = LeaderIdentity {
                        cluster: cluster.clone(),
                        node_id: node_id.clone(),
                        address: address.clone(),
                        term: permit.guard.term,
                        guard: WriteGuard::Term(permit.guard.clone()),
                        token: permit.token.clone(),
                        promoted_at: permit.promoted_at,
                        earlier_grants,
                        new_term: true,
                        ha: Some(ha.clone()),
                    };
                    self.load_until_done(identity, &store, &ha, settings, &runner, &permit.token).await;
                }
                Ok(_) => {}
                Err(_) => {
                    if self.current.read().expect("keeper poisoned").is_some() {
                        self.install(None);
                    }
                }
            }
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return },
                _ = self.invalidated() => {}
                _ = shutdown.cancelled() => { self.install(None); return }
            }
            // A role change may leave the view untouched while the hold ends: check again.
            if ha.view().role != HaRole::Leader {
                self.install(None);
            }
        }
    }

    /// Loads the state for `identity`, retrying store failures while the term lasts.
    async fn load_until_done(
        &self,
        identity: LeaderIdentity,
        store: &Store,
        ha: &Ha,
        settings: LeaseSettings,
        runner: &Arc<ProcedureRunner>,
        token: &CancellationToken,
    ) {
        let term = identity.term;
        let mut pause = Duration::from_millis(50);
        while !token.is_cancelled() {
            let loaded = match MetadataLeader::load(identity.clone(), store.clone(), ha.clock().clone(), settings).await
            {
                // The state is installed (and DDL accepted) only once the procedures it
                // resumes hold their locks.
                Ok(leader) => match runner.claim_running(&leader).await {
                    Ok(claimed) => Ok((leader, claimed)),
                    Err(error) => Err(MetadataError::from(error)),
                },
                Err(error) => Err(error),
            };
            match loaded {
                Ok((leader, claimed)) => {
                    self.install(Some(leader.clone()));
                    info!(term, "serving data-node heartbeats");
                    runner.clone().resume(leader.clone(), claimed);
                    let propagator = runner.propagator().clone();
                    let pools = self.configured_pools.clone();
                    tokio::spawn(crate::assigner::assign_buckets(
                        leader.clone(),
                        propagator,
                        settings.assign_interval,
                        pools,
                    ));
                    if let Some(resources) = &self.resources {
                        tokio::spawn(resources.clone().run(leader.clone()));
                    }
                    tokio::spawn(sweep_tombstones(leader));
                    return;
                }
                Err(MetadataError::StaleTerm { .. }) if !ha.is_leader_now() => {
                    warn!(term, "the term was taken over while loading the data-node state");
                    return;
                }
                Err(error) => {
                    if let MetadataError::StaleTerm { .. } = error {
                        // The local hold is valid: the lease ran out on the store's clock
                        // first. A renewal revives it (or ends the term), then load again.
                        ha.renew_now();
                    }
                    warn!(term, %error, "could not load the data-node state; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = token.cancelled() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Forgets tombstones in the store once they have provably fenced, while `leader` holds.
async fn sweep_tombstones(leader: Arc<MetadataLeader>) {
    let every = (leader.proceed_after() / 2).max(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = leader.token().cancelled() => return,
        }
        crate::metrics::loop_iteration("tombstones");
        if let Err(error) = leader.evict_silent().await {
            warn!(%error, "could not evict silent data nodes; trying again later");
        }
        if let Err(error) = leader.sweep_tombstones().await {
            warn!(%error, "could not forget settled tombstones; trying again later");
        }
    }
}
