//! The command-line grammar (clap derive). Every command and flag has its help text here; the
//! behaviour lives in the module named after the command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
pub use sotto_server::Broker;

/// Sotto: private chat over MQTT. The server moves ciphertext only and keeps no personal data.
#[derive(Debug, Parser)]
#[command(name = "sotto", version, propagate_version = true)]
#[command(after_help = "\
Getting started:
  sotto serve --data ./server                        # operator: prints URL, CA file, fingerprint
  sotto signup --server https://localhost:7443 --ca ./server/ca.pem
  sotto card                                         # show your card; the other person scans it
  sotto add 'sotto:...'                              # add their card (verified)
  sotto send <user id> 'hello'                       # delivered even if they are offline
  sotto inbox                                        # read what arrived

  sotto demo                                         # everything above in one process")]
pub struct Cli {
    /// The encrypted device store (SQLCipher) of person commands.
    #[arg(
        long,
        global = true,
        env = "SOTTO_STORE",
        default_value = "./sotto.db",
        value_name = "PATH"
    )]
    pub store: PathBuf,

    /// Reach host NAME at ADDRESS instead of asking DNS, still verifying the server's
    /// certificate for NAME (as `curl --resolve`): for a server whose name DNS does not know.
    /// Repeatable; SOTTO_RESOLVE takes a comma-separated list. Person commands only.
    #[arg(
        long,
        global = true,
        env = "SOTTO_RESOLVE",
        value_delimiter = ',',
        value_name = "NAME=ADDRESS",
        value_parser = parse_resolve
    )]
    pub resolve: Vec<(String, std::net::IpAddr)>,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: CA, membership (HTTPS) and message service (MQTT over mutual TLS).
    ///
    /// Creates the CA in the data directory on first start (and keeps it afterwards), prints the
    /// membership URL, the broker address, the CA file and its SHA-256 fingerprint, and runs until
    /// Ctrl-C. Listens on loopback unless told otherwise.
    Serve(ServeArgs),
    /// Create an account: a new encrypted store, keys, and a certificate from the service (Req1).
    ///
    /// Nothing personal is sent: only public keys. The passphrase (SOTTO_PASSPHRASE or a prompt)
    /// encrypts the store.
    Signup(SignupArgs),
    /// Show your contact card: a `sotto:` URI and a QR code for the other person to scan.
    Card(CardArgs),
    /// Add a contact: from a card (verified) or a user id (from the directory, unverified).
    Add(AddArgs),
    /// Compare safety numbers with a contact and mark them verified.
    Verify(VerifyArgs),
    /// Show a contact's identity changes (RX-9): messages held because they claim a new
    /// identity, and the identity the directory holds, each with both safety numbers.
    Identity(ContactArgs),
    /// Accept a contact's new identity after comparing its safety number in person or on a call:
    /// the one held messages claim (they then open), else the one the directory holds. The
    /// contact is unverified until `verify`.
    Accept(ContactArgs),
    /// Refuse the new identity held messages claim for a contact: they are dropped unopened.
    Reject(ContactArgs),
    /// Block a user: nothing from them is opened or answered any more, nothing is sent to them.
    Block(ContactArgs),
    /// Lift a block.
    Unblock(ContactArgs),
    /// Send a message; it is delivered even if the recipient is offline.
    Send(SendArgs),
    /// Receive everything queued for you, print the new messages and exit.
    Inbox(InboxArgs),
    /// Chat interactively: lines you type are sent, incoming messages and receipts are shown.
    Chat(ChatArgs),
    /// Groups: create, add or remove members (the admin rekeys), send, list.
    #[command(subcommand)]
    Group(GroupCommand),
    /// List your contacts and how far each is trusted.
    Contacts,
    /// Give a contact a name you can use instead of the user id (or remove it with --clear).
    Name(NameArgs),
    /// Show a conversation with a contact or a group, its new messages marked, and mark it read.
    History(HistoryArgs),
    /// Delete a message, a conversation or a contact from this device's store (nothing is
    /// sent), or your whole account (--account: at the service too).
    Delete(DeleteArgs),
    /// Change the passphrase of the store (SOTTO_NEW_PASSPHRASE, or typed twice).
    Passphrase,
    /// Show your user id, the service you signed up with, and the state of the store.
    Whoami,
    /// Run a demonstration: three people on an in-process server, then what the server saw.
    Demo(DemoArgs),
    /// Check Req1..Req8: the model check, the vectors, the trace replay and the wiretap, then a
    /// table of every requirement with its evidence (exit 0 only when all pass).
    ///
    /// Progress goes to stderr, the table (or JSON) to stdout. A skipped source shows as
    /// SKIPPED and never counts as a pass.
    Check(CheckArgs),
    /// Load test: N clients x M messages through each broker over loopback, with random
    /// disconnects; every message must arrive exactly once.
    ///
    /// Runs `sotto serve` as a child process and the clients in this one; prints throughput,
    /// latency (p50, p99, max) and the server's peak memory. Exit 0 only when every message is in
    /// its recipient's store exactly once and every receipt came back.
    Soak(SoakArgs),
}

/// `sotto serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The data directory: CA, server certificate, membership.db, Mosquitto's files.
    #[arg(long, default_value = "./sotto-server", value_name = "DIR")]
    pub data: PathBuf,
    /// Where the membership service (HTTPS) listens; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7443", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Where the message service (MQTT over mutual TLS) listens; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8883", value_name = "ADDR")]
    pub mqtt: SocketAddr,
    /// The broker: `embedded` (Sotto's in-process broker behind the authorizing mutual-TLS front;
    /// queued messages live in memory), `mosquitto` (a Mosquitto 2 child behind the same
    /// front, in DIR/mosquitto; queued messages persist) or `nats` (a NATS cluster you run, see
    /// --nats; queued messages are replicated, and several `sotto serve` can share it).
    #[arg(
        long,
        default_value = "embedded",
        value_name = "embedded|mosquitto|nats"
    )]
    pub broker: Broker,
    /// With --broker nats: the cluster.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// With --broker mosquitto: do not start Mosquitto, only write its files into DIR/mosquitto
    /// for a Mosquitto you run yourself (`mosquitto -c DIR/mosquitto/mosquitto.conf`, for example
    /// under systemd). It still runs behind the front, on the Unix socket DIR/mosquitto/run/mqtt.sock.
    #[arg(long)]
    pub mosquitto_external: bool,
    /// Serve the operator's metrics (GET /metrics, Prometheus text) and health check
    /// (GET /health) over plain HTTP on ADDR, for example 127.0.0.1:9464. They hold totals only,
    /// nothing about a person. Default: not served.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// A name or address devices reach this server by (repeatable): a DNS name such as
    /// chat.example, or an IP address. The server certificate names each (besides localhost,
    /// 127.0.0.1 and ::1); the first one is the host of the membership URL and of the broker
    /// address told to devices.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// The broker address told to devices at signup (default: the first --name and the --mqtt
    /// port, or else the --mqtt address with `localhost` for an unspecified IP).
    #[arg(long, value_name = "HOST:PORT")]
    pub public_broker: Option<String>,
    /// Where the membership directory lives: `sqlite` (DIR/membership.db, one instance) or a
    /// PostgreSQL URL, postgresql://USER@HOST:PORT/DB, that any number of `sotto serve`
    /// instances share (each with the same CA files in its DIR; docs/operations.md). Read from
    /// SOTTO_DIRECTORY when not given, so that a password stays out of the process list.
    #[arg(long, env = "SOTTO_DIRECTORY", default_value = "sqlite", value_name = "sqlite|URL",
          value_parser = parse_directory, hide_env_values = true)]
    pub directory: sotto_server::membership::DirectoryBackend,
    /// Proof-of-work difficulty of signup in bits, 0..=32 (0 turns it off).
    #[arg(long, default_value_t = sotto_server::membership::DEFAULT_DIFFICULTY, value_name = "N")]
    pub difficulty: u8,
    /// Signups one address may make at once before the rate limit (then one every 30 s); for
    /// many people behind one address, or a load test.
    #[arg(long, default_value_t = sotto_server::membership::quota::QuotaLimits::DEFAULT.signups_per_source.burst, value_name = "N")]
    pub signup_burst: u32,
}

/// Where a NATS cluster is (`--broker nats`; deploy/cluster/README.md).
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// With --broker nats: the MQTT listeners of the cluster's nodes, HOST:PORT,HOST:PORT,...
    /// (the front fails over between them).
    #[arg(
        id = "nats",
        long = "nats",
        value_name = "ADDR,ADDR,...",
        value_delimiter = ','
    )]
    pub mqtt: Vec<SocketAddr>,
    /// With --broker nats: the nodes' NATS client ports, HOST:PORT,...: what the engine holds
    /// for an inbox is asked there (a front, before it refuses a PUBLISH to a full inbox,
    /// BROKER-5; `sotto check`, for Req6).
    #[arg(
        id = "nats_api",
        long = "nats-api",
        value_name = "ADDR,ADDR,...",
        value_delimiter = ','
    )]
    pub api: Vec<SocketAddr>,
    /// With --broker nats: the NATS user of the fronts (the cluster's `authorization` block).
    #[arg(
        id = "nats_user",
        long = "nats-user",
        default_value = "sotto",
        value_name = "USER"
    )]
    pub user: String,
    /// With --broker nats: that user's password. Read from SOTTO_NATS_PASSWORD when not given,
    /// so that it stays out of the process list.
    #[arg(
        id = "nats_password",
        long = "nats-password",
        env = "SOTTO_NATS_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
}

impl NatsArgs {
    /// The cluster for `broker`: `None` unless it is NATS; an error, with what to do, when
    /// `--broker nats` and `--nats` do not go together or the password is missing.
    pub fn cluster(
        &self,
        broker: Broker,
    ) -> anyhow::Result<Option<sotto_server::broker::nats::NatsCluster>> {
        use crate::errors::hinted;
        if (broker == Broker::Nats) == self.mqtt.is_empty() {
            return Err(hinted(
                "--broker nats and --nats go together",
                "give the nodes' MQTT listeners: --broker nats --nats HOST:PORT,HOST:PORT,HOST:PORT \
                 (deploy/cluster/profile-start.sh starts a cluster)",
            ));
        }
        if broker != Broker::Nats {
            return Ok(None);
        }
        if self.api.is_empty() {
            return Err(hinted(
                "--broker nats needs --nats-api too",
                "give the nodes' NATS client ports: --nats-api HOST:PORT,HOST:PORT,HOST:PORT",
            ));
        }
        let Some(password) = &self.password else {
            return Err(hinted(
                "--broker nats needs the password of the fronts' NATS user",
                "set SOTTO_NATS_PASSWORD (or --nats-password) to the password of --nats-user in \
                 the cluster's authorization block",
            ));
        };
        sotto_server::broker::nats::NatsCluster::new(
            self.mqtt.clone(),
            self.api.clone(),
            &self.user,
            password,
        )
        .map(Some)
        .map_err(|e| hinted(format!("--nats: {e}"), "give at least one HOST:PORT"))
    }
}

/// A `--directory` value: `sqlite` or a `postgres://` / `postgresql://` URL.
fn parse_directory(text: &str) -> Result<sotto_server::membership::DirectoryBackend, String> {
    sotto_server::membership::DirectoryBackend::parse(text).ok_or_else(|| {
        "expected `sqlite` or a PostgreSQL URL (postgresql://USER@HOST:PORT/DB)".to_owned()
    })
}

/// `sotto signup`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("trust").required(true).args(["ca", "ca_fingerprint"])))]
pub struct SignupArgs {
    /// The membership service URL that `sotto serve` printed.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The service's CA certificate (DIR/ca.pem of the server), given to you by the operator.
    #[arg(long, value_name = "CA.pem")]
    pub ca: Option<PathBuf>,
    /// Instead of the CA file: its SHA-256 fingerprint (hex, as `sotto serve` prints it). The
    /// CA is fetched from the server and used only if it matches.
    #[arg(long, value_name = "HEX")]
    pub ca_fingerprint: Option<String>,
    /// One-time prekeys uploaded at signup (at most 100).
    #[arg(long, default_value_t = sotto_client::Config::default().signup_one_time_prekeys, hide = true)]
    pub one_time_prekeys: usize,
}

/// `sotto card`.
#[derive(Debug, Args)]
pub struct CardArgs {
    /// Print only the URI, no QR code.
    #[arg(long)]
    pub no_qr: bool,
}

/// `sotto add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// A card (`sotto:...`, scanned in person: verified) or a user id (fetched from the
    /// directory: unverified until you compare safety numbers).
    #[arg(value_name = "CARD|USER_ID")]
    pub who: String,
}

/// `sotto verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The contact's user id (or a unique prefix of it).
    #[arg(value_name = "USER_ID")]
    pub user: String,
    /// Mark verified without asking (only after comparing the numbers another way).
    #[arg(long, short)]
    pub yes: bool,
}

/// `sotto send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The recipient's user id (or a unique prefix among your contacts).
    #[arg(value_name = "USER_ID")]
    pub to: String,
    /// The text (several words are joined with spaces).
    #[arg(value_name = "TEXT", required = true, num_args = 1..)]
    pub text: Vec<String>,
    /// How long to try to reach the broker before leaving the message queued in the store.
    #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// `sotto inbox`.
#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Longest time to spend receiving.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// How long nothing new must arrive before the inbox counts as drained.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub quiet: Duration,
}

/// `sotto chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The contact: user id, a unique prefix of it, or its name.
    #[arg(value_name = "CONTACT")]
    pub with: String,
    /// Earlier messages of the conversation to show first.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub history: usize,
}

/// A command about one contact.
#[derive(Debug, Args)]
pub struct ContactArgs {
    /// The contact: user id, a unique prefix of it, or its name.
    #[arg(value_name = "CONTACT")]
    pub contact: String,
}

/// `sotto name`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The contact: user id, a unique prefix of it, or its current name.
    #[arg(value_name = "CONTACT")]
    pub contact: String,
    /// The name (1 to 64 characters).
    #[arg(value_name = "NAME", required_unless_present = "clear")]
    pub name: Option<String>,
    /// Remove the contact's name.
    #[arg(long, conflicts_with = "name")]
    pub clear: bool,
}

/// `sotto history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// A contact (user id, prefix or name) or a group id (or a unique prefix).
    #[arg(value_name = "CONTACT_OR_GROUP")]
    pub with: String,
    /// Show only the last N messages (0: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub last: usize,
}

/// `sotto delete`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("what")
        .required(true)
        .args(["message", "conversation", "contact", "account"])
))]
pub struct DeleteArgs {
    /// The message number `sotto history` shows (#N).
    #[arg(long, value_name = "N")]
    pub message: Option<i64>,
    /// Every message with a contact (user id, prefix or name) or in a group.
    #[arg(long, value_name = "CONTACT_OR_GROUP")]
    pub conversation: Option<String>,
    /// A contact: its keys and sessions, its name, the conversation and its messages still in
    /// the outbox.
    #[arg(long, value_name = "CONTACT")]
    pub contact: Option<String>,
    /// Your account: the service forgets your keys, certificate and inbox (messages to you are
    /// refused from then on), and this device's store is deleted. Cannot be undone.
    #[arg(long)]
    pub account: bool,
    /// With --account: do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

/// `sotto group ...`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group with you as admin; every member must be a contact.
    Create(GroupCreateArgs),
    /// Add a member (admin only): a new epoch for everyone.
    Add(GroupMemberArgs),
    /// Remove a member (admin only): a new epoch and key that they never get.
    Remove(GroupMemberArgs),
    /// Send a message to a group.
    Send(GroupSendArgs),
    /// List your groups with their epoch and members.
    List,
    /// Leave a group: your keys for it are deleted now, and the admin removes you (a new epoch
    /// you never get). The admin hands the group over first.
    Leave(GroupLeaveArgs),
    /// Hand your admin role over to a member (admin only): they issue the next epoch as admin.
    Handover(GroupMemberArgs),
}

/// `sotto group leave`.
#[derive(Debug, Args)]
pub struct GroupLeaveArgs {
    /// The group id (or a unique prefix, see `sotto group list`).
    pub group: String,
}

/// `sotto group create`.
#[derive(Debug, Args)]
pub struct GroupCreateArgs {
    /// A name for the group, shown when it is created (not stored: use the printed group id).
    pub name: String,
    /// The members' user ids (or unique prefixes among your contacts).
    #[arg(required = true, num_args = 1.., value_name = "USER_ID")]
    pub members: Vec<String>,
}

/// `sotto group add` / `sotto group remove` / `sotto group handover`.
#[derive(Debug, Args)]
pub struct GroupMemberArgs {
    /// The group id (or a unique prefix, see `sotto group list`).
    pub group: String,
    /// The member's user id (or a unique prefix).
    #[arg(value_name = "USER_ID")]
    pub user: String,
}

/// `sotto group send`.
#[derive(Debug, Args)]
pub struct GroupSendArgs {
    /// The group id (or a unique prefix, see `sotto group list`).
    pub group: String,
    /// The text (several words are joined with spaces).
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

/// `sotto demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The protocol core alone, in memory, without network, TLS or store.
    #[arg(long)]
    pub in_memory: bool,
    /// With --in-memory: a seed that makes the run reproducible.
    #[arg(long, requires = "in_memory", value_name = "N")]
    pub seed: Option<u64>,
}

/// The brokers `sotto check` (replay and wiretap) and `sotto soak` run through: one [`Broker`]
/// by name, or `both` (each in turn, embedded first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers(Vec<Broker>);

impl Brokers {
    /// The brokers chosen, in the order they run.
    pub fn each(&self) -> Vec<Broker> {
        self.0.clone()
    }
}

impl std::str::FromStr for Brokers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "both" => Ok(Brokers(Broker::ALL.to_vec())),
            one => one
                .parse::<Broker>()
                .map(|b| Brokers(vec![b]))
                .map_err(|_| "one of embedded, mosquitto, both, nats".to_owned()),
        }
    }
}

/// A source of evidence `sotto check` can skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckSource {
    /// The exhaustive model check.
    Model,
    /// The replay of model traces against the real stack.
    Replay,
    /// The wiretap of the server side (Req6, Req8).
    Wiretap,
    /// The known-answer vectors.
    Vectors,
}

/// `sotto check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The model configuration to check exhaustively.
    #[arg(
        long,
        default_value = "default",
        value_name = "NAME",
        value_parser = clap::builder::PossibleValuesParser::new(sotto_conformance::model_run::CONFIG_NAMES)
    )]
    pub model_config: String,
    /// Model checker threads (0: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub model_threads: usize,
    /// The directory of vector files.
    #[arg(long, default_value = "vectors", value_name = "DIR")]
    pub vectors: PathBuf,
    /// The coverage gaps explained (docs/coverage.md): a gap of the report's coverage lines not
    /// listed there fails the check.
    #[arg(long, default_value = "docs/coverage.md", value_name = "FILE")]
    pub coverage_gaps: PathBuf,
    /// The directory of model traces to replay (`sotto-model export-traces`).
    #[arg(long, default_value = "traces", value_name = "DIR")]
    pub traces: PathBuf,
    /// The broker(s) for the replay and the wiretap; `nats` is a cluster someone runs (--nats,
    /// --nats-api), on which each trace and the wiretap get a fresh service.
    #[arg(
        long,
        default_value = "embedded",
        value_name = "embedded|mosquitto|both|nats"
    )]
    pub broker: Brokers,
    /// With --broker nats: the cluster.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Replay every trace (default: a bounded set, the discoveries first).
    #[arg(long)]
    pub full: bool,
    /// A source not to run (repeatable); its requirements show SKIPPED, never PASS.
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub skip: Vec<CheckSource>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as JSON to this file (CI keeps it beside the table).
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page: the requirements, the evidence,
    /// the coverage and every broken model variant's counterexample as a message sequence chart
    /// beside its steps (searched in --counterexamples-config; not with --skip model).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// With --html: the model configuration the broken variants' counterexamples are searched in.
    #[arg(
        long,
        default_value = "default",
        value_name = "NAME",
        requires = "html",
        value_parser = clap::builder::PossibleValuesParser::new(sotto_conformance::model_run::CONFIG_NAMES)
    )]
    pub counterexamples_config: String,
    /// With --html: also a chart for each trace the replay replayed (read from --traces).
    #[arg(long, requires = "html")]
    pub chart_traces: bool,
}

/// `sotto soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Clients, each with its own account, store and MQTT session.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub clients: usize,
    /// Messages each client sends (round robin to its peers).
    #[arg(long, default_value_t = 500, value_name = "M")]
    pub messages: usize,
    /// Peers each client writes to (and hears from); offsets on a ring chosen by the seed.
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub peers: usize,
    /// Messages a client may have on the way (sent, not yet received) before it waits.
    #[arg(long, default_value_t = 8, value_name = "W")]
    pub window: usize,
    /// The broker(s) to run through, one after the other; `nats` is a cluster someone runs
    /// (--nats, --nats-api; the password from SOTTO_NATS_PASSWORD, which `sotto serve` inherits).
    #[arg(
        long,
        default_value = "both",
        value_name = "embedded|mosquitto|both|nats"
    )]
    pub broker: Brokers,
    /// With --broker nats: the cluster.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// After each send, the probability that the client disconnects and stays offline for a
    /// while (its inbox queues at the broker, what it sends meanwhile waits in its outbox).
    #[arg(long, default_value_t = 0.01, value_name = "P")]
    pub disconnect: f64,
    /// Longest offline period after a random disconnect (uniform from 0).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub offline: Duration,
    /// Seed of every random choice (peers, disconnects, offline periods).
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Hard bound of the whole command (every broker); past it the soak fails.
    #[arg(long, default_value = "60m", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Where the throwaway stores and server data go (default: the system temp directory; on
    /// a tmpfs such as /dev/shm the figures leave out the disk's fsync).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the figures as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `500ms`, `20s`, `2m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 20s, 2m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("unknown unit in {s:?}: use ms, s or m")),
    }
}

/// One `--resolve NAME=ADDRESS`.
fn parse_resolve(entry: &str) -> Result<(String, std::net::IpAddr), String> {
    sotto_client::Resolve::parse_entry(entry).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
