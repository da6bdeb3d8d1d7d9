//! Lease acquire, renew, read and a term-guarded write, per store backend, each against a
//! plain `SELECT 1` round trip on the same pool, measured in the same run.
//!
//! The operations are interleaved round by round, so that a noisy neighbour slows all of
//! them alike and the ratios stay meaningful.
//!
//!   cargo bench -p leasehold-benches --bench store_lease
//!
//! PostgreSQL and MySQL run when LEASEHOLD_TEST_POSTGRES_URL / LEASEHOLD_TEST_MYSQL_URL are set.
//! LEASEHOLD_BENCH_ROUNDS sets the number of rounds (default 1000).

use std::time::{Duration, Instant};

use leasehold_benches::{Samples, micros};
use leasehold_store::{
    LeaseHolder, MigrationSet, NodeRegistration, Store, StoreOptions, TermGuard, WriteGuard, new_incarnation,
};

const OPS: [&str; 6] = ["select 1", "read lease", "renew", "acquire", "release", "guarded write"];

async fn bench(label: &str, url: &str, rounds: usize) {
    let store = Store::connect(StoreOptions::new(url)).await.expect("connect");
    store.migrate(MigrationSet::All).await.expect("migrate");
    let cluster = format!("bench-{}", &new_incarnation()[..8]);
    store.run("create lease row", async |db| db.ensure_lease_row(&cluster).await).await.unwrap();
    let holder = LeaseHolder { node_id: "b1".into(), incarnation: new_incarnation(), address: "127.0.0.1:7400".into() };
    let registration = NodeRegistration {
        cluster: cluster.clone(),
        node_id: "b1".into(),
        incarnation: holder.incarnation.clone(),
        address: holder.address.clone(),
        mode: "auto".into(),
        priority: 0,
        role: "leader".into(),
    };
    store.run("register node", async |db| db.insert_node(&registration).await).await.unwrap();
    let ttl = Duration::from_secs(60);
    let view = store.run("read lease", async |db| db.read_lease(&cluster).await).await.unwrap();
    let mut term = store
        .run("acquire lease", async |db| db.try_acquire(&cluster, &view, &holder, ttl).await)
        .await
        .unwrap()
        .expect("free lease");

    let mut samples: Vec<Samples> = vec![Samples::default(); OPS.len()];
    let warmup = rounds / 10;
    for round in 0..warmup + rounds {
        let guard = TermGuard { cluster: cluster.clone(), term, incarnation: holder.incarnation.clone() };
        let mut timings = [Duration::ZERO; OPS.len()];

        let started = Instant::now();
        store.run("select 1", async |db| db.select_one().await).await.unwrap();
        timings[0] = started.elapsed();

        let started = Instant::now();
        store.run("read lease", async |db| db.read_lease(&cluster).await).await.unwrap();
        timings[1] = started.elapsed();

        let started = Instant::now();
        assert!(store.run("renew lease", async |db| db.renew(&guard, ttl).await).await.unwrap());
        timings[2] = started.elapsed();

        let started = Instant::now();
        let mut tx = store.begin_guarded(&WriteGuard::Term(guard.clone())).await.unwrap();
        tx.run(async |db| {
            db.update_node_settings(&cluster, "b1", &holder.incarnation, "auto", (round % 7) as i32).await
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        timings[5] = started.elapsed();

        let started = Instant::now();
        assert!(store.run("release lease", async |db| db.release(&guard).await).await.unwrap());
        timings[4] = started.elapsed();

        let view = store.run("read lease", async |db| db.read_lease(&cluster).await).await.unwrap();
        let started = Instant::now();
        term = store
            .run("acquire lease", async |db| db.try_acquire(&cluster, &view, &holder, ttl).await)
            .await
            .unwrap()
            .expect("released lease");
        timings[3] = started.elapsed();

        if round >= warmup {
            for (sample, timing) in samples.iter_mut().zip(timings) {
                sample.push(timing);
            }
        }
    }

    let baseline = samples[0].quantile(0.5);
    println!("\n{label}: {rounds} rounds");
    println!("| operation | p50 µs | p99 µs | p50 / SELECT 1 |");
    println!("| --- | ---: | ---: | ---: |");
    for (op, sample) in OPS.iter().zip(&samples) {
        let p50 = sample.quantile(0.5);
        println!(
            "| {op} | {} | {} | {:.2} |",
            micros(p50),
            micros(sample.quantile(0.99)),
            p50.as_secs_f64() / baseline.as_secs_f64()
        );
    }
    store.close().await;
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent; do nothing then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let rounds = std::env::var("LEASEHOLD_BENCH_ROUNDS").ok().and_then(|value| value.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = std::env::temp_dir().join("leasehold-bench").join(new_incarnation());
        let sqlite = format!("sqlite://{}/bench.db", dir.display());
        bench("sqlite (file, WAL, synchronous=FULL)", &sqlite, rounds).await;
        let _ = std::fs::remove_dir_all(&dir);
        for (label, variable) in [("postgres", "LEASEHOLD_TEST_POSTGRES_URL"), ("mysql", "LEASEHOLD_TEST_MYSQL_URL")] {
            match std::env::var(variable) {
                Ok(url) if !url.is_empty() => bench(label, &url, rounds).await,
                _ => println!("\n{label}: skipped ({variable} is not set)"),
            }
        }
    });
}
