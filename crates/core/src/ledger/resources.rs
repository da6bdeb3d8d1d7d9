//! The resource keeper's view of the registry: which resource each registered incarnation
//! runs as, and which resources are live by the one definition of [`Ledger::is_live`].

use super::*;

impl<C: Clone> Ledger<C> {
    /// Records that `key` runs as `resource` (its registration's); empty for none.
    pub fn set_resource(&mut self, key: &NodeKey, resource: &str) {
        if resource.is_empty() {
            self.resources.remove(key);
        } else {
            self.resources.insert(key.clone(), resource.to_owned());
        }
    }

    /// The resources carried by a live registered incarnation at `now`. A node whose
    /// heartbeats arrive but whose answers are lost is not live, so its resource is an orphan.
    pub fn live_resources(&self, now: MonoTime) -> BTreeSet<String> {
        self.resources.iter().filter(|(key, _)| self.is_live(key, now)).map(|(_, resource)| resource.clone()).collect()
    }

    /// The registered incarnations that run as `resource`.
    pub fn nodes_of_resource(&self, resource: &str) -> Vec<NodeKey> {
        self.resources.iter().filter(|(_, id)| *id == resource).map(|(key, _)| key.clone()).collect()
    }

    /// The resource `key` runs as, if any.
    pub fn resource_of(&self, key: &NodeKey) -> Option<&str> {
        self.resources.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn start() -> TermStart {
        TermStart {
            promoted_at: at(0),
            earlier_grants: Duration::from_secs(1),
            proceed_after: Duration::from_secs(3),
            retention: 100,
            store_epoch: "e".into(),
            offline_after: Duration::from_secs(3),
        }
    }

    fn beat(ledger: &mut Ledger<()>, key: &NodeKey, ms: u64) {
        let beat = Beat { key, applied: 0, store_epoch: "e", needs_resync: false, refused: None };
        ledger.heartbeat(beat, None, at(ms)).unwrap();
    }

    #[test]
    fn a_resource_is_live_while_its_node_is_and_not_after_the_offline_timeout() {
        let mut ledger: Ledger<()> = Ledger::new(start(), Inherited::default());
        let key = NodeKey::new("dn1", "i1");
        ledger.register("dn1", "i1", "a:1", None, at(0));
        ledger.set_resource(&key, "dn1");
        beat(&mut ledger, &key, 10_000);
        assert_eq!(ledger.live_resources(at(10_000)), BTreeSet::from(["dn1".to_owned()]));
        assert_eq!(ledger.live_resources(at(12_999)).len(), 1);
        assert!(ledger.live_resources(at(13_000)).is_empty());
        assert_eq!(ledger.nodes_of_resource("dn1"), vec![key.clone()]);
        assert_eq!(ledger.resource_of(&key), Some("dn1"));
    }

    #[test]
    fn a_retired_or_replaced_incarnation_no_longer_carries_its_resource() {
        let mut ledger: Ledger<()> = Ledger::new(start(), Inherited::default());
        let first = NodeKey::new("dn1", "i1");
        ledger.register("dn1", "i1", "a:1", None, at(0));
        ledger.set_resource(&first, "dn1");
        ledger.register("dn1", "i2", "a:1", Some("i1".into()), at(5));
        assert!(ledger.nodes_of_resource("dn1").is_empty());
        let second = NodeKey::new("dn1", "i2");
        ledger.set_resource(&second, "dn1");
        ledger.retire(std::slice::from_ref(&second), std::slice::from_ref(&second), Departure::Left, at(6));
        assert!(ledger.nodes_of_resource("dn1").is_empty());
    }

    #[test]
    fn an_inherited_resource_counts_as_live_for_one_offline_timeout_after_the_promotion() {
        let key = NodeKey::new("dn1", "i1");
        let inherited = Inherited::<()> {
            registered: vec![(key.clone(), "a:1".into())],
            resources: vec![(key, "dn1".into())],
            ..Inherited::default()
        };
        let ledger = Ledger::new(start(), inherited);
        assert_eq!(ledger.live_resources(at(2_999)).len(), 1);
        assert!(ledger.live_resources(at(3_000)).is_empty());
    }
}
