//! Mode and priority changes, and the view of this node that RPCs and watchers see.

use super::*;

impl Ha {
    /// Changes this node's mode; returns the previous one. On the leader the change is a
    /// term-guarded write, and a mode other than auto or master demotes it.
    pub async fn set_mode(&self, requested: HaMode) -> Result<HaMode, HaError> {
        let _serial = self.inner.setter.lock().await;
        let current = self.control().mode;
        let is_leader = self.is_leader_now();
        let now = self.inner.clock.now();
        let live_leader = self
            .view()
            .leader
            .filter(|leader| leader.node_id != self.inner.settings.node_id && !leader.remaining(now).is_zero())
            .map(|leader| leader.node_id);
        let change = decide_mode_change(current, requested, is_leader, live_leader.as_deref())?;
        if !current.uses_lease() {
            return Ok(current);
        }
        let priority = self.control().priority;
        self.persist_settings(requested, priority).await?;
        {
            let mut control = self.control();
            control.mode = requested;
            control.demote_requested |= change.demote;
            control.contend_now |= change.contend_now;
        }
        self.inner.view.send_modify(|view| view.mode = requested);
        self.inner.wake.notify_one();
        info!(from = %current, to = %requested, demote = change.demote, "HA mode changed");
        if change.demote {
            self.wait_until_not_leader().await;
        }
        Ok(current)
    }

    /// Changes this node's priority; returns the previous one. On the leader the change is a
    /// term-guarded write.
    pub async fn set_priority(&self, priority: i32) -> Result<i32, HaError> {
        let _serial = self.inner.setter.lock().await;
        let (mode, previous) = {
            let control = self.control();
            (control.mode, control.priority)
        };
        if mode.uses_lease() {
            self.persist_settings(mode, priority).await?;
        }
        self.control().priority = priority;
        self.inner.view.send_modify(|view| view.priority = priority);
        self.inner.wake.notify_one();
        info!(from = previous, to = priority, "priority changed");
        Ok(previous)
    }

    /// Writes this node's mode and priority to the registry: term-guarded when it leads.
    pub(super) async fn persist_settings(&self, mode: HaMode, priority: i32) -> Result<(), HaError> {
        let (cluster, node_id, incarnation) =
            (&self.inner.settings.cluster, &self.inner.settings.node_id, &self.inner.incarnation);
        let Ok(permit) = self.permit() else {
            self.inner
                .store
                .run("update node settings", async |db| {
                    db.update_node_settings(cluster, node_id, incarnation, mode.as_str(), priority).await
                })
                .await?;
            return Ok(());
        };
        // From here on this node acts on a leadership check that may already be stale; the
        // store's guard is what keeps a deposed leader from writing.
        failpoint::pause(failpoint::BEFORE_GUARDED_WRITE).await;
        let stale = |error: StoreError| match error {
            StoreError::StaleTerm { term } => {
                warn!(term, "the store refused a guarded write: another leader took over");
                HaError::StaleTerm { term, leader: self.known_leader_address() }
            }
            other => HaError::Store(other),
        };
        let mut tx = self.inner.store.begin_guarded(&WriteGuard::Term(permit.guard.clone())).await.map_err(stale)?;
        failpoint::pause(failpoint::INSIDE_GUARDED_WRITE).await;
        tx.run(async |db| db.update_node_settings(cluster, node_id, incarnation, mode.as_str(), priority).await)
            .await
            .map_err(stale)?;
        tx.commit().await.map_err(stale)?;
        Ok(())
    }

    pub(super) async fn wait_until_not_leader(&self) {
        let mut view = self.subscribe();
        let limit = self.inner.settings.timings.lease_ttl;
        let _ = tokio::time::timeout(limit, view.wait_for(|view| view.role != HaRole::Leader)).await;
    }

    pub(super) fn set_role(&self, role: HaRole, reason: &'static str) {
        let changed = self.inner.view.send_if_modified(|view| {
            let changed = view.role != role;
            view.role = role;
            changed
        });
        if changed {
            metrics::transition(role.as_str(), reason);
            info!(role = %role, reason, node_id = %self.inner.settings.node_id, "role changed");
        }
    }

    /// Records what a lease read showed: the leader this node knows and the store's clock.
    pub(super) fn observe_lease(&self, lease: &LeaseView, read_at: MonoTime) {
        *self.inner.store_clock.lock().expect("store clock poisoned") = Some((lease.store_now_ms, read_at));
        let leader = lease.live_holder().map(|holder| KnownLeader {
            node_id: holder.node_id.clone(),
            address: holder.address.clone(),
            term: lease.term,
            lease_expires_at_ms: lease.expires_at_ms,
            observed_at: read_at,
            remaining_at_observation: Duration::from_millis(lease.remaining_ms().max(0).unsigned_abs()),
        });
        self.inner.view.send_if_modified(|view| {
            let changed_leader =
                view.leader.as_ref().map(|l| (&l.node_id, l.term)) != leader.as_ref().map(|l| (&l.node_id, l.term));
            if changed_leader && let Some(new) = &leader {
                info!(leader = %new.node_id, term = new.term, address = %new.address, "observed a new leader");
            }
            let changed_term = view.term != lease.term;
            if changed_term {
                metrics::set_term(lease.term);
            }
            view.term = lease.term;
            view.leader = leader;
            changed_leader || changed_term
        });
    }

    /// Publishes this node as the leader, with its hold as the remaining time.
    pub(super) fn publish_self_as_leader(&self, term: u64, sent: MonoTime) {
        let now = self.inner.clock.now();
        let hold_until = self.hold_until().unwrap_or(now);
        let ttl = self.inner.settings.timings.lease_ttl;
        let expires_at_ms = self
            .inner
            .store_clock
            .lock()
            .expect("store clock poisoned")
            .map(|(store_ms, at)| store_ms + (sent - at).as_millis() as i64 + ttl.as_millis() as i64)
            .unwrap_or(0);
        let leader = KnownLeader {
            node_id: self.inner.settings.node_id.clone(),
            address: self.inner.settings.address.clone(),
            term,
            lease_expires_at_ms: expires_at_ms,
            observed_at: now,
            remaining_at_observation: now.until(hold_until),
        };
        self.inner.view.send_if_modified(|view| {
            let changed = view.role != HaRole::Leader || view.term != term;
            view.role = HaRole::Leader;
            view.term = term;
            view.leader = Some(leader);
            changed
        });
    }
}
