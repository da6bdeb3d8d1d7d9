//! The election loop: the follower reads the lease and contends once it has expired, the
//! leader renews and steps down. Every choice is a pure function in core
//! ([`follow_step`], [`after_renewal`]); this is their runtime.

use super::*;

struct Acquired {
    term: u64,
    sent: MonoTime,
    /// The row the winning acquire was sent against.
    previous_term: u64,
    previous_holder: Option<String>,
    /// Why the lease was free to take.
    reason: &'static str,
}

impl Acquired {
    fn answered(term: u64, sent: MonoTime, view: &LeaseView) -> Self {
        Acquired {
            term,
            sent,
            previous_term: view.term,
            previous_holder: view.holder.as_ref().map(|holder| holder.node_id.clone()),
            reason: if view.holder.is_some() {
                "the previous lease expired or was released"
            } else {
                "the lease was free"
            },
        }
    }
}

impl Ha {
    /// Runs the election until `shutdown`; on the way out a leader steps down, then releases
    /// the lease so that a successor takes over at once, and the registry row is marked
    /// stopped. Returns an error when this node cannot go on (its id was taken, or `master`
    /// found a live leader).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), HaError> {
        if !self.inner.settings.mode.uses_lease() {
            info!(node_id = %self.inner.settings.node_id, "ha.mode is disabled: serving stand-alone, without a lease");
            metrics::set_leader(false, 0);
            shutdown.cancelled().await;
            return Ok(());
        }
        let mut session = self.inner.ha_store.lease_session(self.inner.settings.timings.store_timeout);
        let id_lost = CancellationToken::new();
        let refresher = tokio::spawn(self.clone().refresh_registry(shutdown.clone(), id_lost.clone()));
        self.set_role(HaRole::Follower, "registered");

        let mut result = Ok(());
        let mut first = None;
        // Kept across terms: an acquire sent before this node last led may still commit.
        let mut unanswered = UnansweredAcquires::default();
        if self.inner.settings.mode == HaMode::Master {
            match self.master_start(&mut session).await {
                Ok(acquired) => first = Some(acquired),
                Err(error) => result = Err(error),
            }
        }
        if result.is_ok() {
            loop {
                let acquired = match first.take() {
                    Some(acquired) => Some(acquired),
                    None => self.follow(&mut session, &mut unanswered, &shutdown, &id_lost).await,
                };
                let Some(acquired) = acquired else { break };
                self.lead(&mut session, acquired, &shutdown, &id_lost).await;
            }
            if id_lost.is_cancelled() {
                result = Err(HaError::NodeIdLost { node_id: self.inner.settings.node_id.clone() });
            }
        }

        refresher.abort();
        let _ = refresher.await;
        if !id_lost.is_cancelled() {
            let settings = &self.inner.settings;
            match self
                .inner
                .ha_store
                .run("stop node", async |db| {
                    db.stop_node(&settings.cluster, &settings.node_id, &self.inner.incarnation).await
                })
                .await
            {
                Ok(_) => {
                    info!(node_id = %settings.node_id, "marked stopped in the coordinator registry")
                }
                Err(error) => {
                    warn!(%error, "could not mark this node stopped; a restart waits one lease TTL for its id")
                }
            }
        }
        self.set_role(HaRole::Stopped, "shutdown");
        result
    }

    /// `master` at start: take the lease now, or fail at once when a live leader exists.
    async fn master_start(&self, session: &mut LeaseSession) -> Result<Acquired, HaError> {
        let settings = &self.inner.settings;
        for _ in 0..3 {
            let read_at = self.inner.clock.now();
            let view = session.run("read lease", async |db| db.read_lease(&settings.cluster).await).await?;
            self.observe_lease(&view, read_at);
            if let Some(holder) = view.live_holder() {
                return Err(HaError::LiveLeaderAtStart {
                    node_id: holder.node_id.clone(),
                    address: holder.address.clone(),
                    term: view.term,
                    remaining_ms: view.remaining_ms(),
                });
            }
            let sent = self.inner.clock.now();
            if let Some(term) = session
                .run("acquire lease", async |db| {
                    db.try_acquire(&settings.cluster, &view, &self.holder(), settings.timings.lease_ttl).await
                })
                .await?
            {
                metrics::acquire("won");
                return Ok(Acquired::answered(term, sent, &view));
            }
            metrics::acquire("lost");
        }
        let view = session.run("read lease", async |db| db.read_lease(&settings.cluster).await).await?;
        let holder = view.holder.clone().unwrap_or(LeaseHolder {
            node_id: "another node".into(),
            incarnation: String::new(),
            address: String::new(),
        });
        Err(HaError::LiveLeaderAtStart {
            node_id: holder.node_id,
            address: holder.address,
            term: view.term,
            remaining_ms: view.remaining_ms(),
        })
    }

    /// The follower loop: returns once this node acquired the lease, or `None` at shutdown.
    async fn follow(
        &self,
        session: &mut LeaseSession,
        unanswered: &mut UnansweredAcquires,
        shutdown: &CancellationToken,
        id_lost: &CancellationToken,
    ) -> Option<Acquired> {
        let settings = &self.inner.settings;
        let timings = &settings.timings;
        loop {
            metrics::loop_iteration("follower");
            if shutdown.is_cancelled() || id_lost.is_cancelled() {
                return None;
            }
            let read_at = self.inner.clock.now();
            let view = match session.run("read lease", async |db| db.read_lease(&settings.cluster).await).await {
                Ok(view) => view,
                Err(error) => {
                    metrics::store_error("read lease");
                    warn!(%error, "could not read the lease; retrying");
                    self.pause(timings.poll_interval, shutdown, id_lost, true).await;
                    continue;
                }
            };
            self.observe_lease(&view, read_at);
            if !unanswered.is_empty() {
                let held_by_me = view.live_holder().is_some_and(|holder| {
                    holder.node_id == settings.node_id && holder.incarnation == self.inner.incarnation
                });
                let row = RowSeen { term: view.term, version: view.version, held_by_me };
                let hold = timings.local_hold().unwrap_or(Duration::ZERO);
                if let Some(sent) = unanswered.judge(row, self.inner.clock.now(), hold) {
                    metrics::acquire("adopted");
                    info!(
                        term = view.term,
                        sent_ms_ago = self.inner.clock.now().saturating_since(sent).as_millis() as u64,
                        "an acquire whose answer was lost had won: adopted, holding from its earliest send"
                    );
                    return Some(Acquired {
                        term: view.term,
                        sent,
                        previous_term: view.term.saturating_sub(1),
                        previous_holder: None,
                        reason: "an acquire whose answer was lost had won",
                    });
                }
                if held_by_me {
                    info!(
                        term = view.term,
                        "the lease names this node, but no unanswered acquire of ours with a hold left wrote it; waiting for it to expire"
                    );
                }
            }
            let lease = LeaseSeen {
                expired: view.is_expired(),
                from_expiry: Duration::from_millis(view.remaining_ms().unsigned_abs()),
            };
            let state = {
                let control = self.control();
                FollowerState {
                    mode: control.mode,
                    contend_now: control.contend_now,
                    sit_out_until: control.sit_out_until,
                }
            };
            let delay = match follow_step(lease, state, self.inner.clock.now(), timings.poll_interval) {
                FollowStep::ReadAgainAfter(pause) => {
                    self.pause(pause, shutdown, id_lost, true).await;
                    continue;
                }
                FollowStep::AcquireNow => Duration::ZERO,
                FollowStep::AcquireAfterBackOff { expired_for } => {
                    let my_rank = self.rank(&view).await;
                    acquire_delay(expired_for, my_rank, timings.priority_step, timings.poll_interval)
                }
            };
            if !delay.is_zero() {
                // Not woken by setting changes: the back-off is what makes priority hold.
                self.pause(delay, shutdown, id_lost, false).await;
                if shutdown.is_cancelled() || id_lost.is_cancelled() || !self.control().mode.is_candidate() {
                    continue;
                }
            }
            let sent = self.inner.clock.now();
            match session
                .run("acquire lease", async |db| {
                    db.try_acquire(&settings.cluster, &view, &self.holder(), timings.lease_ttl).await
                })
                .await
            {
                Ok(Some(_)) if failpoint::armed(failpoint::ACQUIRE_ANSWER_LOST) => {
                    metrics::acquire("error");
                    warn!("failpoint: the acquire committed, its answer is dropped");
                    unanswered.record(view.version, view.term, sent);
                    self.pause(timings.poll_interval, shutdown, id_lost, true).await;
                }
                Ok(Some(term)) => {
                    metrics::acquire("won");
                    unanswered.answered_win(view.version);
                    return Some(Acquired::answered(term, sent, &view));
                }
                Ok(None) => metrics::acquire("lost"),
                Err(error) => {
                    metrics::acquire("error");
                    // It may have committed, or still may: the next reads of the row tell.
                    unanswered.record(view.version, view.term, sent);
                    warn!(%error, "lease acquire failed; retrying");
                    self.pause(timings.poll_interval, shutdown, id_lost, true).await;
                }
            }
        }
    }

    /// The leader loop: renews until shutdown, demotion, loss of the lease, or the end of the
    /// local hold, then steps down (and releases the lease when leaving on purpose).
    async fn lead(
        &self,
        session: &mut LeaseSession,
        acquired: Acquired,
        shutdown: &CancellationToken,
        id_lost: &CancellationToken,
    ) {
        let settings = &self.inner.settings;
        let timings = &settings.timings;
        let clock = &self.inner.clock;
        let term = acquired.term;
        let guard = self.guard(term);
        let promoted_at = clock.now();
        {
            let mut control = self.control();
            control.leadership = Some(Leadership {
                term,
                hold_until: timings.hold_until(acquired.sent),
                token: shutdown.child_token(),
                promoted_at,
            });
            control.demote_requested = false;
            control.contend_now = false;
            control.sit_out_until = None;
        }
        info!(
            term,
            node_id = %settings.node_id,
            previous_term = acquired.previous_term,
            previous_holder = acquired.previous_holder.as_deref().unwrap_or_default(),
            reason = acquired.reason,
            "became leader"
        );
        self.publish_self_as_leader(term, acquired.sent);
        metrics::set_leader(true, term);
        metrics::transition("leader", "acquired");

        let mut failures = 0;
        let mut next_renew = acquired.sent + timings.renew_interval;
        let reason = loop {
            metrics::loop_iteration("leader");
            let hold_until = self.hold_until().unwrap_or(MonoTime::ZERO);
            let now = clock.now();
            if let Some(reason) = hold_ended(hold_until, now) {
                break reason;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break StepDown::Shutdown,
                _ = id_lost.cancelled() => break StepDown::NodeIdLost,
                _ = tokio::time::sleep(now.until(hold_until)) => break StepDown::HoldExpired,
                _ = self.inner.wake.notified() => {
                    let mut control = self.control();
                    if std::mem::take(&mut control.demote_requested) {
                        break StepDown::Demoted;
                    }
                    if !std::mem::take(&mut control.renew_requested) {
                        continue;
                    }
                }
                _ = tokio::time::sleep(now.until(next_renew)) => {}
            }
            let sent = clock.now();
            // The renewal races the end of the hold: a store call that hangs cannot keep this
            // node acting as leader, whatever its own timeout does.
            let outcome = tokio::select! {
                result = session.run("renew lease", async |db| db.renew(&guard, timings.lease_ttl).await) => Some(result),
                _ = tokio::time::sleep(sent.until(hold_until)) => None,
            };
            let took = clock.now() - sent;
            let renewal = match outcome {
                None => Renewal::Unanswered,
                Some(Ok(true)) => {
                    metrics::renewal("ok", took);
                    Renewal::Renewed
                }
                Some(Ok(false)) => {
                    metrics::renewal("lost", took);
                    Renewal::Lost
                }
                Some(Err(error)) => {
                    metrics::renewal("error", took);
                    warn!(term, %error, failures = failures + 1, hold_left_ms = clock.now().until(hold_until).as_millis() as u64, "lease renewal failed; retrying until the local hold ends");
                    Renewal::Failed
                }
            };
            let jitter = rand::rng().random_range(Duration::ZERO..=timings.retry_jitter());
            match after_renewal(renewal, sent, clock.now(), failures, jitter, timings) {
                LeadStep::Hold { hold_until, renew_at } => {
                    self.extend_hold(hold_until);
                    self.publish_self_as_leader(term, sent);
                    next_renew = renew_at;
                    failures = 0;
                }
                LeadStep::Retry { at, failures: count } => {
                    next_renew = at;
                    failures = count;
                }
                LeadStep::StepDown(reason) => break reason,
            }
        };
        self.step_down(term, reason);
        if reason.releases_lease() {
            // The successor is looked up and connected to while the release commits, so that
            // only the notice itself is left once it has; the notice is still sent only after
            // the commit (docs/PROTOCOL.md, "The handoff notice").
            let (released, notice) =
                tokio::join!(session.run("release lease", async |db| db.release(&guard).await), self.prepare_notice());
            match released {
                Ok(true) => {
                    info!(term, "released the lease so that a successor can take over at once");
                    self.tell_successor(term, notice).await;
                }
                Ok(false) => info!(term, "the lease had already expired or moved on; nothing to release"),
                Err(error) => {
                    warn!(term, %error, "could not release the lease; a successor waits for it to expire")
                }
            }
        }
        if let Some(until) = reason.sit_out_until(clock.now(), timings) {
            self.control().sit_out_until = Some(until);
        }
    }

    fn step_down(&self, term: u64, reason: StepDown) {
        if let Some(leadership) = self.control().leadership.take() {
            leadership.token.cancel();
        }
        let mut known_term = term;
        self.inner.view.send_modify(|view| {
            view.role = HaRole::Follower;
            view.leader = None;
            known_term = view.term.max(term);
        });
        metrics::set_leader(false, known_term);
        metrics::transition("follower", reason.label());
        match reason {
            StepDown::Shutdown | StepDown::Demoted => {
                info!(term, node_id = %self.inner.settings.node_id, reason = reason.reason(), "stepped down")
            }
            _ => {
                warn!(term, node_id = %self.inner.settings.node_id, reason = reason.reason(), "stepped down")
            }
        }
    }

    /// Sleeps for `duration`, or less when shutting down (or, if `wakeable`, when a setting
    /// changes).
    async fn pause(
        &self,
        duration: Duration,
        shutdown: &CancellationToken,
        id_lost: &CancellationToken,
        wakeable: bool,
    ) {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = shutdown.cancelled() => {}
            _ = id_lost.cancelled() => {}
            _ = self.inner.wake.notified(), if wakeable => {}
        }
    }
}
