//! The coordinator's failpoints, for fault-injection tests: their names, and the shared
//! helpers ([`leasehold::failpoint`]) that arm and evaluate them.

/// Where a leader may be held: after its local leadership check, before its guarded write.
pub const BEFORE_GUARDED_WRITE: &str = "ha::before-guarded-write";
/// Where a leader may be held: inside its guarded write, holding the lease row's lock.
pub const INSIDE_GUARDED_WRITE: &str = "ha::inside-guarded-write";

/// Where a DDL may be held: its prepare committed, before its broadcast.
pub const DDL_AFTER_PREPARE: &str = "ddl::after-prepare";
/// Where a DDL may be held: its prepare proceeded, before the data is dropped.
pub const DDL_BEFORE_DROP_DATA: &str = "ddl::before-drop-data";
/// Where a DDL may be held: its order to drop data committed, before its broadcast.
pub const DDL_AFTER_DROP_ORDER: &str = "ddl::after-drop-order";
/// Where a DDL may be held: its rollback committed, before its broadcast.
pub const DDL_AFTER_ROLLBACK: &str = "ddl::after-rollback";
/// Where a follower's winning lease acquire loses its answer (`1*return`: once), as a call
/// that timed out after its statement committed would.
pub const ACQUIRE_ANSWER_LOST: &str = "ha::acquire-answer-lost";

/// Where a DDL may be held: its commit committed, before its broadcast.
pub const DDL_AFTER_COMMIT: &str = "ddl::after-commit";

/// Where a new leader may be held: it found procedures to resume and has not taken their locks.
pub const DDL_BEFORE_RESUME: &str = "ddl::before-resume";

/// Where the store refuses the write guard of a new term's load (`1*return`: once), as it
/// does when its clock runs ahead of the leader's.
pub const LOAD_GUARD_REFUSED: &str = "store::load-guard-refused";

/// Where the store refuses the write guard of a procedure's commit step (`1*return`: once).
pub const COMMIT_GUARD_REFUSED: &str = "store::commit-guard-refused";

/// Where a broadcast's budget may be cut to `return(MS)` milliseconds, so that it runs over
/// and its procedure retries it.
pub const BROADCAST_BUDGET_CUT: &str = "broadcast::budget-cut";

/// Where a change's commit succeeds but its answer is lost (`return`, or `1*return` once).
pub const COMMIT_ANSWER_LOST: &str = "store::commit-answer-lost";

/// Where an assignment pass may be held: its revokes published, before any of them is
/// granted again.
pub const ASSIGN_AFTER_REVOKE: &str = "assign::after-revoke";

/// Where opening a change's transaction fails, as a store outage would.
pub const BEGIN_FAILS: &str = "store::begin-fails";

/// Where a change may be held with the publication lock taken, before its transaction begins
/// (`return(MS)`).
pub const HOLDING_PUBLICATION_LOCK: &str = "publish::holding-lock";

/// Where a coordinator answers KeepAlive UNIMPLEMENTED, as one of an older version would.
pub const KEEP_ALIVE_UNIMPLEMENTED: &str = "datanodes::keep-alive-unimplemented";

pub use leasehold::failpoint::{armed, init_from_env, millis, pause};
