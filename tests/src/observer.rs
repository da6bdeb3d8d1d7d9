//! The invariant "one acting leader per term", checked by polling every node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::{GetHaStateRequest, HaRole};
use tokio::task::JoinHandle;

use crate::process::channel;

type LeadersByTerm = Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>>;

/// Polls `GetHaState` on every node it watches, each on its own task and connection, and
/// remembers which node reported itself leader in which term.
pub struct LeaderObserver {
    leaders_by_term: LeadersByTerm,
    samples: Arc<Mutex<u64>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for LeaderObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderObserver").finish()
    }
}

impl LeaderObserver {
    /// Starts observing `(node id, address)` pairs.
    pub fn start(endpoints: Vec<(String, String)>) -> LeaderObserver {
        let observer =
            LeaderObserver { leaders_by_term: Arc::default(), samples: Arc::default(), tasks: Mutex::new(Vec::new()) };
        for (node_id, address) in endpoints {
            observer.watch(&node_id, &address);
        }
        observer
    }

    /// Observes another node (a restarted one, say) from now on.
    pub fn watch(&self, node_id: &str, address: &str) {
        let (leaders_by_term, samples) = (self.leaders_by_term.clone(), self.samples.clone());
        let node_id = node_id.to_owned();
        let mut client = ClusterClient::new(channel(address));
        let task = tokio::spawn(async move {
            loop {
                let answer =
                    tokio::time::timeout(Duration::from_millis(300), client.get_ha_state(GetHaStateRequest {})).await;
                if let Ok(Ok(state)) = answer {
                    let state = state.into_inner();
                    *samples.lock().expect("samples poisoned") += 1;
                    if state.role == HaRole::Leader as i32 {
                        leaders_by_term
                            .lock()
                            .expect("terms poisoned")
                            .entry(state.term)
                            .or_default()
                            .insert(node_id.clone());
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        self.tasks.lock().expect("tasks poisoned").push(task);
    }

    /// Waits until some node has been seen leading `term`, and returns it.
    pub async fn leader_of(&self, term: u64, timeout: Duration) -> String {
        let what = format!("the observer sees the leader of term {term}");
        crate::poll::eventually(&what, timeout, || async { self.check().0.get(&term).cloned() }).await
    }

    /// Every node seen leading, per term.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, BTreeSet<String>> {
        self.leaders_by_term.lock().expect("terms poisoned").clone()
    }

    /// Panics if any term was reported by two nodes as theirs; returns the leader of each term
    /// seen, and how many answers were sampled.
    pub fn check(&self) -> (BTreeMap<u64, String>, u64) {
        let leaders = self.leaders_by_term.lock().expect("terms poisoned").clone();
        let mut one_per_term = BTreeMap::new();
        for (term, nodes) in leaders {
            assert_eq!(nodes.len(), 1, "term {term} had more than one acting leader: {nodes:?}");
            one_per_term.insert(term, nodes.into_iter().next().expect("one node"));
        }
        (one_per_term, *self.samples.lock().expect("samples poisoned"))
    }
}

impl LeaderObserver {
    /// The invariant, checked over a run that sampled answers: one acting leader per term.
    pub fn assert_one_leader_per_term(&self) {
        let (_, samples) = self.check();
        assert!(samples > 0, "the observer sampled no answer, so it checked nothing");
    }
}

impl Drop for LeaderObserver {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("tasks poisoned").drain(..) {
            task.abort();
        }
    }
}
