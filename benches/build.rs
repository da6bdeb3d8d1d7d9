//! Compiles the subset of etcd's v3 API that the renewal bench drives (the Lease service) with
//! the vendored protoc, into a client only, on the workspace's own tonic: the bench then speaks
//! to etcd and to the coordinator through the same tonic/h2/tokio client stack.

use std::path::PathBuf;

const PROTO: &str = "proto/etcdserverpb/lease.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    // Never the system protoc: the build must not depend on what the machine has.
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().build_server(false).compile_with_config(
        config,
        &[PathBuf::from(PROTO)],
        &[PathBuf::from("proto")],
    )?;
    println!("cargo:rerun-if-changed={PROTO}");
    Ok(())
}
