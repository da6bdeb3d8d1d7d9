//! Samples every agent's bucket ownership (`Agent/GetOwnership`) every 20 ms and checks, over
//! the whole history, that no bucket was owned twice.
//!
//! A sample is certain of ownership at some instant between its send and its answer. An
//! agent's ownership of a bucket at one epoch is continuous (a grant at an epoch happens
//! once), so it certainly owned the bucket throughout `[first answer, last send]` of its
//! samples at that epoch. Two agents whose certain intervals for one bucket overlap owned it
//! at once; and a lower epoch seen after a higher one was answered means its owner still
//! acted after the bucket was granted again. Neither can be a false alarm.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::v1::GetOwnershipRequest;
use leasehold::v1::agent_client::AgentClient;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process::channel;

/// One answer of one agent.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The agent.
    pub agent: String,
    /// When the request was sent.
    pub sent: Instant,
    /// When the answer came.
    pub answered: Instant,
    /// Bucket and epoch of every bucket it owned.
    pub owned: Vec<(u32, u64)>,
}

/// Samples agents' ownership of one pool until stopped.
#[derive(Debug)]
pub struct OwnershipChecker {
    pool: String,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl OwnershipChecker {
    /// A checker of `pool` that samples no agent yet.
    pub fn new(pool: &str) -> Self {
        Self { pool: pool.to_owned(), samples: Arc::default(), tasks: JoinSet::new(), stop: CancellationToken::new() }
    }

    /// Samples the agent `name` at `address` every 20 ms from now on.
    pub fn watch(&mut self, name: &str, address: &str) {
        let (name, pool, samples, stop) = (name.to_owned(), self.pool.clone(), self.samples.clone(), self.stop.clone());
        let mut client = AgentClient::new(channel(address));
        self.tasks.spawn(async move {
            while !stop.is_cancelled() {
                let sent = Instant::now();
                let request = GetOwnershipRequest { pool: pool.clone() };
                let answer = tokio::time::timeout(Duration::from_millis(300), client.get_ownership(request)).await;
                let answered = Instant::now();
                // A fenced agent (FAILED_PRECONDITION) owns nothing; so does one that did not
                // answer, as far as what it was seen doing goes.
                let owned = match answer {
                    Ok(Ok(response)) => {
                        response.into_inner().buckets.iter().map(|owned| (owned.bucket, owned.epoch)).collect()
                    }
                    _ => Vec::new(),
                };
                samples.lock().expect("samples").push(Sample { agent: name.clone(), sent, answered, owned });
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.cancelled() => {}
                }
            }
        });
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples").clone()
    }

    /// When an agent other than `except` was first seen owning one of `buckets`, in an answer
    /// after `after`: waits (up to 30 s) until a sample shows it. Samples only grow, so the
    /// first one found is the first there is.
    pub async fn first_owned_by_another(&self, except: &str, buckets: &[u32], after: Instant) -> Instant {
        let what = format!("an agent other than {except} owns one of {buckets:?}");
        crate::poll::eventually(&what, Duration::from_secs(30), || async {
            self.samples()
                .iter()
                .filter(|sample| sample.agent != except && sample.answered > after)
                .filter(|sample| sample.owned.iter().any(|(bucket, _)| buckets.contains(bucket)))
                .map(|sample| sample.answered)
                .min()
        })
        .await
    }

    /// Stops sampling; returns every sample.
    pub async fn stop(mut self) -> Vec<Sample> {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.samples()
    }

    /// Stops sampling and checks the whole history; panics naming the first double owner.
    pub async fn finish(self) -> usize {
        let samples = self.stop().await;
        if let Err(violation) = check(&samples) {
            panic!("bucket ownership violated: {violation}");
        }
        samples.len()
    }
}

/// When an agent certainly owned a bucket: from its first answer to its last send.
type Interval = (Instant, Instant);

/// Checks a history of samples (see the module's documentation).
pub fn check(samples: &[Sample]) -> Result<(), String> {
    // (bucket, epoch) → agent → certain interval.
    let mut runs: BTreeMap<(u32, u64), BTreeMap<&str, Interval>> = BTreeMap::new();
    for sample in samples {
        for &(bucket, epoch) in &sample.owned {
            let run =
                runs.entry((bucket, epoch)).or_default().entry(&sample.agent).or_insert((sample.answered, sample.sent));
            run.0 = run.0.min(sample.answered);
            run.1 = run.1.max(sample.sent);
        }
    }
    for ((bucket, epoch), agents) in &runs {
        if agents.len() > 1 {
            return Err(format!(
                "bucket {bucket} at epoch {epoch} was owned by {:?}",
                agents.keys().collect::<Vec<_>>()
            ));
        }
    }
    // Per bucket, every run of every agent: overlapping certain intervals of two agents, or
    // a lower epoch owned after a higher one was seen.
    let mut by_bucket: BTreeMap<u32, Vec<(u64, &str, Instant, Instant)>> = BTreeMap::new();
    for ((bucket, epoch), agents) in &runs {
        for (agent, (from, to)) in agents {
            by_bucket.entry(*bucket).or_default().push((*epoch, agent, *from, *to));
        }
    }
    for (bucket, owners) in &by_bucket {
        for (epoch, agent, from, to) in owners {
            for (other_epoch, other, other_from, other_to) in owners {
                if other_epoch <= epoch {
                    continue;
                }
                if agent != other && from <= other_to && other_from <= to {
                    return Err(format!(
                        "bucket {bucket}: {agent} (epoch {epoch}) and {other} (epoch {other_epoch}) both owned it at once"
                    ));
                }
                if *to > *other_from {
                    return Err(format!(
                        "bucket {bucket}: {agent} still owned epoch {epoch} after {other} was seen owning epoch {other_epoch}"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(agent: &str, at_ms: u64, owned: &[(u32, u64)]) -> Sample {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let at = *BASE.get_or_init(Instant::now) + Duration::from_millis(at_ms);
        Sample { agent: agent.into(), sent: at, answered: at + Duration::from_millis(1), owned: owned.to_vec() }
    }

    #[test]
    fn a_clean_handoff_passes_and_a_double_owner_is_caught() {
        let clean =
            [sample("a", 0, &[(1, 1)]), sample("a", 20, &[(1, 1)]), sample("a", 40, &[]), sample("b", 60, &[(1, 2)])];
        assert_eq!(check(&clean), Ok(()));
        let overlapping = [sample("a", 0, &[(1, 1)]), sample("b", 10, &[(1, 2)]), sample("a", 20, &[(1, 1)])];
        assert!(check(&overlapping).is_err());
        let same_epoch = [sample("a", 0, &[(1, 1)]), sample("b", 100, &[(1, 1)])];
        assert!(check(&same_epoch).is_err());
    }
}
