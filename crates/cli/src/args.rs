//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use leasehold_coordinator::config::LogFormat;
use leasehold_core::HaMode;

/// Leasehold: metadata coordination with lease-based self-fencing.
///
/// A few coordinators keep a cluster's metadata in a SQL store and elect one leader through a
/// lease row in that store. Start one with `leasehold coordinator`, look at it with
/// `leasehold ctl`, or try everything on one machine with `leasehold dev`.
#[derive(Debug, Parser)]
#[command(name = "leasehold", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Logging, for every command. Logs go to stderr.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format: `text` for people, `json` for machines. Overrides `[log] format`.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
    /// Log filter, such as `info` or `leasehold_coordinator=debug,info`. `RUST_LOG` wins.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format {other:?}; expected text or json")),
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a coordinator.
    ///
    /// Every option can also come from the TOML file given with --config and from
    /// LEASEHOLD_* environment variables (nested keys joined by a double underscore, dashes
    /// written as underscores: LEASEHOLD_STORE__URL, LEASEHOLD_HA__LEASE_TTL). Flags win over
    /// variables, variables over the file.
    ///
    /// Example, three coordinators sharing PostgreSQL:
    ///
    ///   leasehold coordinator --node-id c1 --listen 10.0.0.1:7400 --store postgres://leasehold@db/leasehold
    Coordinator(CoordinatorArgs),
    /// Run a data-node agent as a sidecar: it holds a metadata lease from the coordinator
    /// leader, fences itself when it cannot renew, and serves leasehold.v1.Agent.
    ///
    /// Every option can also come from the TOML file given with --config (an `[agent]` table
    /// with the options' names as keys, and the coordinator's `[log]` table) and from
    /// LEASEHOLD_AGENT_* environment variables (the key in capitals, dashes written as
    /// underscores: LEASEHOLD_AGENT_NODE_ID, LEASEHOLD_AGENT_HEARTBEAT_INTERVAL; lists
    /// comma-separated: LEASEHOLD_AGENT_POOLS=a,b; the log keys as LEASEHOLD_AGENT_LOG__LEVEL).
    /// Flags win over variables, variables over the file. A variable that is malformed or
    /// names no key stops the start.
    ///
    /// Example:
    ///
    ///   leasehold agent --node-id dn1 --listen 10.0.1.1:7500 --coordinators 10.0.0.1:7400,10.0.0.2:7400
    Agent(AgentArgs),
    /// Administer a cluster over gRPC.
    ///
    /// The global flags (--endpoints, --output/-w, --timeout, --dial-timeout) go before or after
    /// the command; LEASEHOLD_ENDPOINTS sets the endpoints.
    #[command(after_help = crate::ctl::EXIT_CODES_HELP)]
    Ctl(CtlArgs),
    /// A coordinator on embedded SQLite under ./leasehold-data, for a first look.
    Dev(DevArgs),
    /// Print a shell completion script.
    ///
    /// Example (bash): source <(leasehold completion bash)
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// `leasehold coordinator`
#[derive(Debug, Args, Default)]
pub struct CoordinatorArgs {
    /// A TOML configuration file (see the README for every key).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The stable id of this coordinator; keep it across restarts. [default: coordinator-<listen port>]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// gRPC listen address. [default: 127.0.0.1:7400]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// The address other nodes and clients dial. [default: the bound listen address]
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_address: Option<String>,
    /// Address of /metrics, /healthz, /readyz and the status page (/); an empty string turns it off. [default: 127.0.0.1:7490]
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// The SQL store: sqlite://PATH (created if missing), postgres://USER[:PASS]@HOST[:PORT]/DB
    /// or mysql://USER[:PASS]@HOST[:PORT]/DB. [default: sqlite://leasehold-data/leasehold.db]
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// A file holding the store password, so that it stays out of the URL, the command line
    /// and the logs (a trailing line break is ignored). Not for SQLite.
    #[arg(long, value_name = "PATH")]
    pub store_password_file: Option<std::path::PathBuf>,
    /// The cluster name; several clusters may share one store. [default: default]
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// HA mode: auto (contend), master (take the lease now or fail), standby (candidate, no
    /// reads), hot-standby (candidate, serves reads), hot-backup (reads, never leads),
    /// disabled (stand-alone, no lease). [default: auto]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub ha_mode: Option<HaMode>,
    /// Election priority: after an expiry the highest-priority live candidate wins. [default: 0]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// How long an acquire or renewal keeps the lease, such as 6s or 1500ms. [default: 6s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lease_ttl: Option<Duration>,
    /// How often the leader renews. [default: a third of the lease TTL]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub renew_interval: Option<Duration>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// `leasehold agent`
///
/// Every option but --config and --print-config is a key of the file's `[agent]` table, with
/// the same name. None has a clap default, so that an absent flag leaves the variable, file
/// or default value in place.
#[derive(Debug, Args, Default)]
pub struct AgentArgs {
    /// A TOML configuration file: an `[agent]` table with these options' names as keys, and
    /// the `[log]` table of the coordinator's file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data node's stable id (required).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// gRPC listen address for leasehold.v1.Agent. [default: 127.0.0.1:7500]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// The address coordinators push to. [default: the bound listen address]
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_address: Option<String>,
    /// Every coordinator's endpoint, comma-separated. [default: 127.0.0.1:7400]
    #[arg(long, value_name = "HOST:PORT[,…]", value_delimiter = ',')]
    pub coordinators: Option<Vec<String>>,
    /// Prometheus /metrics listen address; an empty string turns it off. [default: 127.0.0.1:7590]
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// How often to heartbeat (the coordinators check it against the fence duration). [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// The deadline of one heartbeat, below the interval. [default: 500ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// Join this bucket pool as a member (repeat for several, at most 16; the file's key is
    /// `pools`): the leader assigns the pool's buckets over its live members; see `ctl buckets`.
    #[arg(long = "pool", value_name = "NAME", value_delimiter = ',')]
    pub pools: Option<Vec<String>>,
    /// The resource this process is (see `ctl resources`): the leader's resource keeper counts
    /// it live while this data node is, and restarts it through its container when it dies.
    #[arg(long, value_name = "ID")]
    pub resource_id: Option<String>,
    /// The start attempt that launched this process; set by the keeper's container
    /// (`{attempt_id}`), only with a resource id. Once a later attempt exists the leader
    /// refuses this process, and it exits, so two processes never serve one node id.
    #[arg(long, value_name = "ID")]
    pub attempt_id: Option<String>,
    /// Print the effective configuration as TOML, defaults included, and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// `leasehold ctl`
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Coordinator endpoints, comma-separated.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT[,…]",
        value_delimiter = ',',
        env = "LEASEHOLD_ENDPOINTS",
        default_value = "127.0.0.1:7400"
    )]
    pub endpoints: Vec<String>,
    /// Output format: table for people, json for scripts (errors too, on stderr).
    #[arg(long, short = 'w', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up when the cluster has not answered after this long (retries included).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// Give up at once when no endpoint accepts a connection within this long.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub dial_timeout: Duration,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// How `ctl` prints answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Coordinator high availability.
    #[command(subcommand)]
    Ha(HaCommand),
    /// Data nodes and their metadata leases (asked of the leader).
    #[command(subcommand, name = "datanodes")]
    DataNodes(DataNodesCommand),
    /// One data-node agent, asked directly.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Every endpoint given, asked directly: its state, or whether it is healthy.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// Tables.
    #[command(subcommand)]
    Table(TableCommand),
    /// Views.
    #[command(subcommand)]
    View(ViewCommand),
    /// DDL procedures.
    #[command(subcommand)]
    Procedure(ProcedureCommand),
    /// Bucket pools and who owns which bucket (asked of the leader).
    #[command(subcommand)]
    Buckets(BucketsCommand),
    /// Resource groups and the processes the leader's resource keeper keeps running.
    ///
    /// A resource is one data-node process that a container started (a `local` container
    /// spawns it on one coordinator's host; an `external` one, such as Kubernetes, runs it
    /// elsewhere). Its data node registers with the resource's id, which is also its node id.
    /// A group names the container its resources run in, how many members it keeps at least,
    /// and properties passed to every member's command. Containers are configured on the
    /// coordinators (`[containers.NAME]`), never here.
    ///
    /// With `[resources.auto-restart] enabled = true` the leader restarts a resource whose data
    /// node is no longer live (after a grace period, at most `max-retries` times, then cleans
    /// it up) and starts new ones until each group has `--min-members`.
    ///
    /// Example:
    ///
    ///   leasehold ctl resources create-group ingest --container local --min-members 2
    ///
    ///   leasehold ctl resources create dn7 --group ingest --property port=7507
    ///
    ///   leasehold ctl resources list --group ingest
    #[command(subcommand)]
    Resources(ResourcesCommand),
}

#[derive(Debug, Subcommand)]
pub enum ResourcesCommand {
    /// Every group with its container, minimum and properties.
    Groups,
    /// Every resource, or one group's.
    ///
    /// A resource is LIVE while a data node with a valid lease carries its id, and an ORPHAN
    /// (since the store time shown) while none does; ATTEMPTS counts its restarts since it last
    /// stayed live for a whole grace period; PID is what its container recorded; LAST ERROR is
    /// why its last start or stop failed (cut; `show` prints all of it).
    List {
        /// Only this group's resources.
        #[arg(long, value_name = "G")]
        group: Option<String>,
    },
    /// One resource, every field.
    ///
    /// Its properties (its own over its group's), what its container recorded of the process
    /// (pid, log, ...), its start attempt, and the times (store clock) it was first started,
    /// last started and became an orphan.
    Show {
        /// The resource id.
        id: String,
    },
    /// Create a group of resources that run in one container.
    CreateGroup {
        /// Its name: letters, digits, '_', '.', '-', at most 64.
        name: String,
        /// A container configured on the coordinators (`[containers.NAME]`).
        #[arg(long, value_name = "C")]
        container: String,
        /// The keeper starts new resources until the group has at least this many (0 to
        /// 10000; it does so only with auto-restart enabled).
        #[arg(long, value_name = "N", default_value_t = 0)]
        min_members: u32,
        /// A property every member's command sees as `{prop:KEY}`, KEY=VALUE (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
    /// Delete a group; refused while it still has resources.
    DeleteGroup {
        /// The group.
        name: String,
    },
    /// Create a resource in a group and start it through the group's container.
    Create {
        /// Its id, also the node id its data node registers with.
        id: String,
        /// The group.
        #[arg(long, value_name = "G")]
        group: String,
        /// A property of this resource, over the group's, KEY=VALUE (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
    },
    /// Delete a resource: stop its process, deregister its data node, remove it.
    ///
    /// The resource is marked CLEANING at once (its data node may no longer register); then
    /// the leader's keeper stops its process through its container, deregisters its data node
    /// (revoking its buckets) and removes the row. `show` answers NOT_FOUND once the keeper has
    /// finished.
    Delete {
        /// The resource id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BucketsCommand {
    /// Every pool with its bucket count and live members.
    Pools,
    /// Who owns which bucket of a pool, the revokes in flight and the unowned buckets.
    Show {
        /// The pool.
        pool: String,
    },
    /// Print the assignment of a pool every time it changes, until Ctrl-C.
    Watch {
        /// The pool.
        pool: String,
        /// Stop after this many assignments (the first one included).
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
    /// Create a pool; the leader assigns its buckets over its live members at once.
    CreatePool {
        /// Its name (like a table name).
        name: String,
        /// How many buckets, 1 to 65536. [default: the coordinators' assign.bucket-count]
        #[arg(long, value_name = "N")]
        buckets: Option<u32>,
    },
    /// Delete a pool: every data node stops owning its buckets.
    DeletePool {
        /// The pool.
        name: String,
    },
    /// Run an assignment pass over a pool now, and show the result.
    Rebalance {
        /// The pool.
        pool: String,
    },
}

/// Makes a DDL call safe to retry: a retry with the same id returns the first outcome.
#[derive(Debug, Args, Clone)]
pub struct RequestId {
    /// A client request id (up to 128 printable characters).
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create a database.
    Create {
        /// Its name.
        name: String,
        /// The default TTL of its tables, such as 7d.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// A property, KEY=VALUE (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        #[command(flatten)]
        request_id: RequestId,
    },
    /// Drop a database and everything in it (its data is deleted on every data node).
    Drop {
        /// Its name.
        name: String,
        #[command(flatten)]
        request_id: RequestId,
    },
    /// List the databases.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// Create a table, from --column flags or from a JSON or TOML file.
    ///
    /// A column is NAME:TYPE:CATEGORY[:COMMENT], TYPE one of BOOLEAN INT32 INT64 FLOAT DOUBLE
    /// TEXT BLOB TIMESTAMP, CATEGORY one of TIME TAG FIELD ATTRIBUTE; exactly one TIME column
    /// (of type TIMESTAMP). A file holds {"columns": [{"name", "type", "category", "comment"}],
    /// "ttl": "30d", "properties": {...}, "comment": "..."} (or the same in TOML).
    Create {
        /// The database.
        database: String,
        /// The table.
        name: String,
        /// A column, NAME:TYPE:CATEGORY[:COMMENT] (repeatable).
        #[arg(long = "column", value_name = "NAME:TYPE:CATEGORY")]
        columns: Vec<String>,
        /// The table's own TTL (else the database's).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// A property, KEY=VALUE (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
        properties: Vec<(String, String)>,
        /// A comment.
        #[arg(long)]
        comment: Option<String>,
        /// A JSON (.json) or TOML (.toml) definition instead of the flags.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        request_id: RequestId,
    },
    /// Change a table: one action per call.
    Alter {
        /// The database.
        database: String,
        /// The table.
        name: String,
        /// Add a column, NAME:TYPE:CATEGORY[:COMMENT].
        #[arg(long, value_name = "NAME:TYPE:CATEGORY", group = "action")]
        add_column: Option<String>,
        /// Drop a column (its data is deleted on every data node).
        #[arg(long, value_name = "NAME", group = "action")]
        drop_column: Option<String>,
        /// Set the table's own TTL, or `none` to inherit the database's.
        #[arg(long, value_name = "DURATION|none", group = "action")]
        set_ttl: Option<String>,
        /// Set a property, KEY=VALUE (repeatable).
        #[arg(long = "set-property", value_name = "KEY=VALUE", value_parser = parse_property)]
        set_properties: Vec<(String, String)>,
        /// Remove a property (repeatable).
        #[arg(long = "unset-property", value_name = "KEY")]
        unset_properties: Vec<String>,
        /// Set the comment.
        #[arg(long, value_name = "TEXT", group = "action")]
        set_comment: Option<String>,
        #[command(flatten)]
        request_id: RequestId,
    },
    /// Drop a table (its data is deleted on every data node).
    Drop {
        /// The database.
        database: String,
        /// The table.
        name: String,
        #[command(flatten)]
        request_id: RequestId,
    },
    /// Show a table.
    Get {
        /// The database.
        database: String,
        /// The table.
        name: String,
    },
    /// List the tables of a database.
    List {
        /// The database.
        database: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ViewCommand {
    /// Create a view.
    Create {
        /// The database.
        database: String,
        /// The view.
        name: String,
        /// Its definition.
        #[arg(long)]
        definition: String,
        #[command(flatten)]
        request_id: RequestId,
    },
    /// Drop a view.
    Drop {
        /// The database.
        database: String,
        /// The view.
        name: String,
        #[command(flatten)]
        request_id: RequestId,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProcedureCommand {
    /// The newest procedures.
    List {
        /// Only those in this state: running, succeeded, rolled_back, failed.
        #[arg(long)]
        state: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One procedure.
    Get {
        /// Its id.
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataNodesCommand {
    /// Every registered data node and tombstone with its lease status.
    List,
    /// Bump the metadata version and wait until every data node acknowledged it or has
    /// provably fenced.
    Barrier,
    /// Remove a data node that is gone: its incarnation is retired and listed as a tombstone
    /// until it has provably fenced, then forgotten. Refused while it may still hold a lease
    /// (exit code 5).
    Remove {
        /// Its node id, as `datanodes list` shows it.
        node_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// The agent's lease: NORMAL, FENCED or RESYNCING, time left, version, leader.
    Lease {
        /// The agent's endpoint. Required: no address is right for every agent (a sidecar
        /// listens on 127.0.0.1:7500 by default, dev's agents on 7501 and up).
        #[arg(long, value_name = "HOST:PORT")]
        agent: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Each endpoint's node, mode, role, term, leader, and how long it took to answer.
    Status,
    /// Each endpoint's gRPC health (the process serves); exits 3 when one is not healthy.
    Health,
}

#[derive(Debug, Subcommand)]
pub enum HaCommand {
    /// The current leader: node id, address, term and lease time left.
    Leader,
    /// The HA state of each endpoint given.
    State,
    /// Every coordinator the store knows (asked of the leader or a hot node).
    States,
    /// Change a node's HA mode; answers with the previous one. On the leader, a mode other
    /// than auto or master makes it step down so that a successor takes over.
    SetState {
        /// auto, master, standby, hot-standby or hot-backup.
        #[arg(value_parser = parse_mode)]
        mode: HaMode,
        #[command(flatten)]
        target: Target,
    },
    /// The election priority of each endpoint, or of one node.
    Priority {
        /// The node to ask. [default: every endpoint]
        #[arg(long, value_name = "HOST:PORT")]
        node: Option<String>,
    },
    /// Change a node's election priority; answers with the previous one.
    SetPriority {
        /// The new priority; higher wins.
        #[arg(allow_negative_numbers = true)]
        priority: i32,
        #[command(flatten)]
        target: Target,
    },
    /// Remove a coordinator that is gone (stopped, or lost: silent for a lease TTL) from the
    /// registry; refused while it is live (exit code 5). Started again, it registers afresh.
    Remove {
        /// Its node id, as `ha states` lists it.
        node_id: String,
    },
}

/// Which node a change applies to.
#[derive(Debug, Args)]
pub struct Target {
    /// The node to change. [default: the first endpoint]
    #[arg(long, value_name = "HOST:PORT")]
    pub node: Option<String>,
    /// Allow changing a node that is not the leader (sends `leasehold-allow-non-leader: true`).
    #[arg(long)]
    pub allow_non_leader: bool,
}

/// `leasehold dev`
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where the embedded SQLite store lives.
    #[arg(long, value_name = "DIR", default_value = "leasehold-data")]
    pub data_dir: PathBuf,
    /// gRPC listen address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7400")]
    pub listen: String,
    /// Address of /metrics, /healthz, /readyz and the status page (/).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7490")]
    pub metrics_listen: String,
    /// How many data-node agents to run beside the coordinator (on ports 7501, 7502, …, or
    /// on free ports when --listen uses port 0).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub agents: u16,
}

fn parse_property(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{value:?} is not KEY=VALUE"))
}

fn parse_mode(value: &str) -> Result<HaMode, String> {
    value.parse().map_err(|error: leasehold_core::mode::UnknownMode| error.to_string())
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|error| format!("{error} (write durations like 6s, 500ms or 1m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_modes_and_bad_durations_are_refused_with_the_choices() {
        let error = Cli::try_parse_from(["leasehold", "coordinator", "--ha-mode", "leader"]).unwrap_err().to_string();
        assert!(error.contains("expected one of auto, master"), "{error}");
        let error = Cli::try_parse_from(["leasehold", "coordinator", "--lease-ttl", "soon"]).unwrap_err().to_string();
        assert!(error.contains("6s, 500ms"), "{error}");
    }

    #[test]
    fn a_property_without_equals_is_a_usage_error() {
        let error = Cli::try_parse_from([
            "leasehold",
            "ctl",
            "resources",
            "create",
            "r1",
            "--group",
            "g",
            "--property",
            "port",
        ])
        .unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(error.to_string().contains("\"port\" is not KEY=VALUE"), "{error}");
        let cli = Cli::try_parse_from([
            "leasehold",
            "ctl",
            "resources",
            "create-group",
            "g",
            "--container",
            "k8s",
            "--property",
            "a=b=c",
        ])
        .unwrap();
        let Command::Ctl(CtlArgs { command: CtlCommand::Resources(command), .. }) = cli.command else {
            panic!("not ctl resources")
        };
        let ResourcesCommand::CreateGroup { min_members, properties, .. } = command else { panic!("not create-group") };
        assert_eq!((min_members, properties), (0, vec![("a".into(), "b=c".into())]));
    }

    #[test]
    fn a_completion_script_names_the_commands_and_global_flags() {
        use clap::CommandFactory;
        let mut script = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut Cli::command(), "leasehold", &mut script);
        let script = String::from_utf8(script).unwrap();
        for word in ["coordinator", "ctl", "endpoint", "--dial-timeout", "--endpoints"] {
            assert!(script.contains(word), "{word} is completed");
        }
    }

    #[test]
    fn global_flags_may_come_before_or_after_the_command() {
        for args in [
            vec![
                "leasehold",
                "ctl",
                "--output",
                "json",
                "--endpoints",
                "a:1,b:2",
                "--dial-timeout",
                "1s",
                "ha",
                "leader",
            ],
            vec!["leasehold", "ctl", "ha", "leader", "-w", "json", "--endpoints", "a:1,b:2", "--dial-timeout", "1s"],
            vec!["leasehold", "ctl", "ha", "--endpoints=a:1,b:2", "leader", "--output=json", "--dial-timeout=1s"],
        ] {
            let Command::Ctl(ctl) = Cli::try_parse_from(&args).unwrap().command else { panic!("not ctl") };
            assert_eq!(ctl.output, Output::Json, "{args:?}");
            assert_eq!(ctl.endpoints, ["a:1", "b:2"], "{args:?}");
            assert_eq!(ctl.dial_timeout, Duration::from_secs(1), "{args:?}");
        }
    }

    #[test]
    fn agent_lease_names_its_agent() {
        // A default address would be wrong for most agents and fail only after the dial timeout.
        let error = Cli::try_parse_from(["leasehold", "ctl", "agent", "lease"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(error.to_string().contains("--agent <HOST:PORT>"), "{error}");
        let cli = Cli::try_parse_from(["leasehold", "ctl", "agent", "lease", "--agent", "127.0.0.1:7501"]).unwrap();
        let Command::Ctl(CtlArgs { command: CtlCommand::Agent(AgentCommand::Lease { agent }), .. }) = cli.command
        else {
            panic!("not ctl agent lease")
        };
        assert_eq!(agent, "127.0.0.1:7501");
    }

    #[test]
    fn negative_priorities_parse() {
        let cli = Cli::try_parse_from(["leasehold", "coordinator", "--priority", "-3"]).unwrap();
        let Command::Coordinator(args) = cli.command else { panic!("not coordinator") };
        assert_eq!(args.priority, Some(-3));
    }
}
