//! The bucket plan for 10 000 buckets over 1 000 members: a cold start (nothing owned), one
//! member leaving, one joining; against cloning the assignment, measured in the same run.
//! Every case checks first that its moves equal the lower bound.
//!
//!   cargo bench -p leasehold-benches --bench bucket_plan

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use leasehold_core::buckets::{lower_bound, plan};
use leasehold_core::contact::NodeKey;

const BUCKETS: usize = 10_000;
const MEMBERS: usize = 1_000;

fn member(index: usize) -> NodeKey {
    NodeKey::new(format!("dn{index:04}"), "9f86d081884c7d659a2feaa0c55ad015")
}

/// A balanced assignment of every bucket over `members`.
fn balanced(members: &[NodeKey]) -> Vec<Option<NodeKey>> {
    let owners: Vec<Option<NodeKey>> = vec![None; BUCKETS];
    let refs: Vec<Option<&NodeKey>> = owners.iter().map(Option::as_ref).collect();
    let mut owners = owners.clone();
    for step in plan(&refs, members) {
        owners[step.bucket as usize] = Some(step.to);
    }
    owners
}

/// A case's name, the owners before, and the live members.
type Case<'a> = (&'a str, &'a Vec<Option<NodeKey>>, &'a Vec<NodeKey>);

fn bench(c: &mut Criterion) {
    let members: Vec<NodeKey> = (0..MEMBERS).map(member).collect();
    let owned = balanced(&members);
    let without_last: Vec<NodeKey> = members[..MEMBERS - 1].to_vec();
    let with_new: Vec<NodeKey> = members.iter().cloned().chain([member(MEMBERS)]).collect();
    let nothing: Vec<Option<NodeKey>> = vec![None; BUCKETS];
    let cases: [Case; 3] = [
        ("cold start", &nothing, &members),
        ("one member leaves", &owned, &without_last),
        ("one member joins", &owned, &with_new),
    ];
    let mut group = c.benchmark_group("bucket_plan_10000x1000");
    group.bench_function("baseline: clone the assignment", |b| b.iter(|| black_box(owned.clone())));
    for (name, owners, live) in cases {
        let refs: Vec<Option<&NodeKey>> = owners.iter().map(Option::as_ref).collect();
        let moves = plan(&refs, live).len();
        assert_eq!(moves, lower_bound(&refs, live), "{name}: moves equal the lower bound");
        eprintln!("{name}: {moves} moves (the lower bound)");
        group.bench_function(name, |b| {
            b.iter(|| {
                let refs: Vec<Option<&NodeKey>> = owners.iter().map(Option::as_ref).collect();
                black_box(plan(&refs, live))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
