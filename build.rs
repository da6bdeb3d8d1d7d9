//! Compiles `proto/` with the vendored protoc and writes the file descriptor set that the
//! servers hand to gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/leasehold/v1/cluster.proto",
    "proto/leasehold/v1/catalog.proto",
    "proto/leasehold/v1/metadata.proto",
    "proto/leasehold/v1/datanodes.proto",
    "proto/leasehold/v1/agent.proto",
    "proto/leasehold/v1/assignments.proto",
    "proto/leasehold/v1/resources.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    // Never the system protoc: the build must not depend on what the machine has.
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("leasehold_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
