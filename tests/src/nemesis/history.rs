//! The history of a nemesis run: every operation with its invoke and complete times on one
//! monotonic clock, and its outcome; written as JSON lines.

use std::sync::{Arc, Mutex};

use leasehold::status::error_reason;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::{Code, Status};

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It happened: a DDL committed, a barrier settled, a read was served (at `version`).
    Ok {
        /// The version it committed at, settled, or served.
        version: u64,
    },
    /// It certainly did not happen: the server refused it.
    Refused {
        /// The gRPC code.
        code: String,
        /// The `ErrorInfo` reason, when there is one.
        reason: String,
    },
    /// It may or may not have happened: no answer, or an answer that does not say.
    Unknown {
        /// The gRPC code.
        code: String,
        /// The `ErrorInfo` reason, when there is one.
        reason: String,
    },
    /// A fault, injected and then ended.
    Injected,
}

impl Outcome {
    /// A short label for summaries: `ok`, `refused:CODE`, `unknown:CODE`, `injected`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok { .. } => "ok".into(),
            Outcome::Refused { code, reason } => format!("refused:{}", if reason.is_empty() { code } else { reason }),
            Outcome::Unknown { code, reason } => format!("unknown:{}", if reason.is_empty() { code } else { reason }),
            Outcome::Injected => "injected".into(),
        }
    }

    /// The status as an outcome: `UNAVAILABLE`, a deadline, a broken call or a broadcast still
    /// running leave it unknown (the call may have run); any other answer is a refusal.
    pub fn of_status(status: &Status) -> Outcome {
        let code = format!("{:?}", status.code());
        let reason = error_reason(status).unwrap_or_default();
        let unknown = matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::ResourceExhausted
        ) || reason == leasehold::status::reason::OBJECT_BUSY;
        if unknown { Outcome::Unknown { code, reason } } else { Outcome::Refused { code, reason } }
    }

    /// A client call's answer as an outcome: its version, or what its error says.
    pub fn of_answer(answer: Result<u64, leasehold::ClientError>) -> Outcome {
        match answer {
            Ok(version) => Outcome::Ok { version },
            Err(error) => match error.status() {
                Some(status) => Outcome::of_status(status),
                None => Outcome::Unknown { code: "client".into(), reason: error.to_string() },
            },
        }
    }

    /// The version, when it happened.
    pub fn version(&self) -> Option<u64> {
        match self {
            Outcome::Ok { version } => Some(*version),
            _ => None,
        }
    }
}

/// One operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Op {
    /// Who ran it: `ddl-1`, `reader-2`, `barrier`, `nemesis`.
    pub process: String,
    /// What it was: `create_table`, `resolve`, `barrier`, or the fault's name.
    pub kind: String,
    /// What it was about: `n1.t0`, an agent, a coordinator.
    pub target: String,
    /// The DDL's request id, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// When it was sent, in microseconds since the run started.
    pub invoke_us: u64,
    /// When its answer came (or the fault ended).
    pub complete_us: u64,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Op {
    /// Whether it is a DDL (of a DDL client).
    pub fn is_ddl(&self) -> bool {
        self.process.starts_with("ddl-")
    }

    /// Whether it is a read through an agent's cache.
    pub fn is_read(&self) -> bool {
        self.kind == "resolve"
    }
}

/// Operations recorded by every task of a run, on one clock.
#[derive(Debug, Clone)]
pub struct History {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> History {
        History { start: Instant::now(), ops: Arc::default() }
    }

    /// Microseconds since the run started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Records an operation.
    pub fn record(&self, op: Op) {
        self.ops.lock().expect("history poisoned").push(op);
    }

    /// Every operation so far, in the order they completed.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().expect("history poisoned").clone();
        ops.sort_by_key(|op| op.complete_us);
        ops
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}
