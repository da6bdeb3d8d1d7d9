//! Leasehold's public API and Rust client SDK.
//!
//! Leasehold is a gRPC metadata-coordination service: a few coordinators keep a cluster's
//! metadata in a SQL store, elect one leader through a lease row in that store, and hand every
//! data node a short metadata lease. This crate is what other services depend on to talk to it.
//!
//! # Layout
//! - [`v1`]: the generated `leasehold.v1` messages, clients and servers, and the file
//!   descriptor set that servers expose through gRPC reflection.
//! - [`status`]: the stable error reasons (`google.rpc.ErrorInfo`) and the metadata keys that
//!   every server and client agree on.
//! - [`catalog`]: conversions between the catalog's messages and its values.
//! - [`client`]: connect to a list of coordinators, find the leader, follow redirects, retry
//!   with backoff under a deadline, and watch leader changes.
//! - `serving` (feature `server`): health and reflection, set up once for every server.
//! - [`failpoint`]: the fault-injection helpers both servers use (feature `failpoints`).

pub mod catalog;
pub mod client;
pub mod failpoint;
#[cfg(feature = "server")]
pub mod serving;
pub mod status;

/// The generated `leasehold.v1` API.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("leasehold.v1");

    /// The encoded `FileDescriptorSet` of every `leasehold.v1` proto, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("leasehold_descriptor");
}

pub use client::{Client, ClientError, ClientOptions};
