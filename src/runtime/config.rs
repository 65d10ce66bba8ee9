//! `slawatch run` configuration: a strict TOML file layered with environment variables.
//!
//! # Precedence
//! **environment > file > built-in default**, key by key. A variable is named
//! `SLAWATCH_<KEY>` for a top-level key (`SLAWATCH_BROKERS`, `SLAWATCH_GROUP_ID`) and
//! `SLAWATCH_<SECTION>_<KEY>` for a key of a section (`SLAWATCH_TOPICS_PARTITIONS`,
//! `SLAWATCH_ENGINE_IDLE_TTL_SECS`), upper case. Values are TOML values (`true`, `12`,
//! `"x"`); a value that does not parse as TOML is taken as a string, and `input_topics`
//! also takes a comma-separated list. `SLAWATCH_KAFKA_<NAME>` sets the librdkafka property
//! `<name>` with `_` read as `.` (`SLAWATCH_KAFKA_SASL_PASSWORD` → `sasl.password`), which is
//! how secrets should be passed. An unknown `SLAWATCH_…` variable is an error (typos must not
//! silently fall back to defaults).
//!
//! # Strictness
//! Every table is `deny_unknown_fields`; cross-field rules are checked by
//! [`Config::validate`] with named errors ([`ConfigError`]). The `[kafka]` table is a raw
//! librdkafka passthrough (`security.protocol`, `sasl.*`, `ssl.*`, `linger.ms`, …) that refuses
//! the properties slawatch owns ([`OWNED_KAFKA_KEYS`]).
//!
//! deploy/slawatch.example.toml documents every key with its default.
use crate::codec::framing::InputFormat;
use crate::core::policy::builtin::PolicySource;
use crate::core::policy::diagnostics::{nearest, Sink};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// librdkafka properties slawatch sets itself; `[kafka]` refuses them.
pub const OWNED_KAFKA_KEYS: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers`"),
    ("metadata.broker.list", "use `brokers`"),
    ("group.id", "use `group_id`"),
    ("group.instance.id", "use `instance_id`"),
    (
        "transactional.id",
        "derived from `group_id` and `instance_id`",
    ),
    ("transaction.timeout.ms", "use `transaction_timeout_ms`"),
    (
        "enable.auto.commit",
        "offsets are committed with the outputs",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed with the outputs",
    ),
    ("isolation.level", "always read_committed"),
    ("partition.assignment.strategy", "always cooperative-sticky"),
    ("enable.idempotence", "always on"),
    ("acks", "always all (idempotence)"),
    ("auto.offset.reset", "always earliest"),
    ("enable.partition.eof", "managed by slawatch"),
];

/// Output encoding of SLA events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Canonical proto3 JSON (`content-type: application/json`).
    #[default]
    Json,
    /// Binary protobuf `slawatch.v1.SlaEvent` (`content-type: application/x-protobuf`).
    Protobuf,
}

/// The whole configuration. Field docs give the default.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka bootstrap servers, `host:port[,host:port…]`. Required.
    pub brokers: String,
    /// Consumer group id; also the prefix of the transactional id. Default `slawatch`.
    #[serde(default = "d_group_id")]
    pub group_id: String,
    /// This replica's stable identity: static group membership (`group.instance.id`) and the
    /// transactional id `<group_id>-<instance_id>`, so a restarted replica fences its zombie
    /// at once and rejoins without a rebalance. Must be unique per replica and stable across
    /// restarts (a StatefulSet pod name). Default: `$HOSTNAME`, else `slawatch-0`.
    #[serde(default = "d_instance_id")]
    pub instance_id: String,
    /// Input topics (conversation events keyed by ticket id). Several topics must have the
    /// same partition count (co-partitioned). Default `["conversations"]`.
    #[serde(default = "d_input_topics")]
    pub input_topics: Vec<String>,
    /// Framing of each input topic's records, topic → `auto` | `json` | `protobuf` |
    /// `schema-registry-protobuf` | `schema-registry-json` (codec::framing). A topic not
    /// named is `auto`: the content-type header when present, else recognised from the
    /// bytes. Default empty (every topic `auto`).
    #[serde(default)]
    pub input_formats: BTreeMap<String, InputFormat>,
    /// Policy file (TOML), reloaded on SIGHUP. Default: the built-in default policy (the
    /// text of deploy/policies/default.toml compiled into the binary).
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    /// Allowed lateness of the watermark, ms (docs/sla-semantics.md rule 5). Default 1000.
    #[serde(default = "d_allowed_lateness_ms")]
    pub allowed_lateness_ms: u64,
    /// How often the open transaction (outputs + state + offsets) is committed, ms. With
    /// exactly-once this bounds how late a read_committed consumer sees an output. While a
    /// backlog is drained, 10× that (at most `transaction_timeout_ms` / 4). Default 100.
    #[serde(default = "d_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// Transactional consume→process→produce (exactly-once for read_committed readers).
    /// `false`: idempotent producer, flush, then commit offsets (at-least-once). Default true.
    #[serde(default = "d_true")]
    pub exactly_once: bool,
    /// `transaction.timeout.ms`, 1000–10000: how long read_committed readers can be held up
    /// by a crashed replica's open transaction. Default 10000.
    #[serde(default = "d_transaction_timeout_ms")]
    pub transaction_timeout_ms: u64,
    /// SLA event encoding: `json` or `protobuf`. Default `json`.
    #[serde(default)]
    pub output_format: OutputFormat,
    /// Admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/tickets/{id}`).
    /// Default `127.0.0.1:9898`.
    #[serde(default = "d_admin_listen")]
    pub admin_listen: SocketAddr,
    /// An event whose occurred_at is more than this ahead of its Kafka record timestamp is
    /// dead-lettered (`clock_skew`), secs. Default 300.
    #[serde(default = "d_max_clock_skew_secs")]
    pub max_clock_skew_secs: u64,
    /// Records larger than this are dead-lettered (`oversize`), bytes. Default 1048576.
    #[serde(default = "d_max_record_bytes")]
    pub max_record_bytes: usize,
    /// Advance a caught-up partition's watermark with the wall clock (rule 5), so breaches
    /// fire without traffic. `false` makes only event time move the watermark (timers then
    /// fire only when later events arrive): for shadow replays of history and tests only.
    /// Default true.
    #[serde(default = "d_true")]
    pub wall_clock_watermark: bool,
    /// Bound on a graceful shutdown (final commit, leaving the group), ms. Default 10000.
    #[serde(default = "d_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Pre-fetched input records librdkafka may hold per processing consumer, KiB
    /// (`queued.max.messages.kbytes`; fetches are sized from it, see
    /// `kafka::clients::consumer_config`). librdkafka's default, 64 MiB, plus a 50 MB fetch
    /// in flight, was most of a drain's peak RSS; 16384 still cost ~75 MiB more peak RSS
    /// than 8192 or 4096 at the same drain rate (docs/performance.md). Default 8192.
    #[serde(default = "d_fetch_queue_kbytes")]
    pub fetch_queue_kbytes: u64,
    /// Records the output producer may hold unsent or unacknowledged, KiB
    /// (`queue.buffering.max.kbytes`; librdkafka's default is 1 GiB). A full queue makes
    /// the processing thread wait for deliveries. Default 65536.
    #[serde(default = "d_producer_queue_kbytes")]
    pub producer_queue_kbytes: u64,
    /// Topic names and creation.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Engine limits and retention (event time).
    #[serde(default)]
    pub engine: EngineLimits,
    /// Processing threads.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Raw librdkafka properties for every client (security, tuning). Keys slawatch owns
    /// are refused. Secret values are masked in `{:?}` and in [`Config::summary`].
    #[serde(default)]
    pub kafka: KafkaProps,
    /// The `SLAWATCH_*` variables that were applied (not a key: filled in by
    /// [`Config::from_sources`], shown by [`Config::summary`]).
    #[serde(skip)]
    pub env_applied: Vec<String>,
}

/// The `[kafka]` passthrough: librdkafka property → value. A map (it derefs to one) whose
/// `Debug` masks secret values ([`is_secret_kafka_key`]), so a logged `Config` never shows
/// a password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct KafkaProps(pub BTreeMap<String, String>);

impl std::ops::Deref for KafkaProps {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KafkaProps {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a KafkaProps {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::fmt::Debug for KafkaProps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if is_secret_kafka_key(k) { "****" } else { v })),
            )
            .finish()
    }
}

/// librdkafka properties whose values are secrets (or may embed one): every key naming a
/// password, secret, key or token (`sasl.password`, `ssl.key.password`, `ssl.key.pem`,
/// `ssl.keystore.password`, `sasl.oauthbearer.client.secret`, …), and
/// `sasl.oauthbearer.config` (free-form, may carry credentials). Masked as `****`.
pub fn is_secret_kafka_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key", "token"]
        .iter()
        .any(|w| k.contains(w))
        || k == "sasl.oauthbearer.config"
}

/// `[topics]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsConfig {
    /// Breach and Cleared events. Default `sla.breaches`.
    #[serde(default = "d_breaches")]
    pub breaches: String,
    /// Warning events. Default `sla.warnings`.
    #[serde(default = "d_warnings")]
    pub warnings: String,
    /// Escalation events. Default `sla.escalations`.
    #[serde(default = "d_escalations")]
    pub escalations: String,
    /// ProgressReminder and FollowUpDue events. Default `sla.reminders`.
    #[serde(default = "d_reminders")]
    pub reminders: String,
    /// SurgeStarted and SurgeEnded events. Default `sla.surges`.
    #[serde(default = "d_surges")]
    pub surges: String,
    /// Rejected input records with reason headers. Default `sla.dead-letters`.
    #[serde(default = "d_dead_letters")]
    pub dead_letters: String,
    /// Compacted changelog of per-ticket and per-partition state; same partition count as
    /// the input. Default `slawatch.state`.
    #[serde(default = "d_state")]
    pub state: String,
    /// Internal topic of `opened` events re-keyed by tenant for surge detection; same
    /// partition count as the input. Default `slawatch.surge-repartition`.
    #[serde(default = "d_surge_repartition")]
    pub surge_repartition: String,
    /// Compacted changelog of the surge detectors, one record per repartition partition;
    /// same partition count as the repartition topic. Default `slawatch.surge-state`.
    #[serde(default = "d_surge_state")]
    pub surge_state: String,
    /// Create missing topics at start-up. Default true.
    #[serde(default = "d_true")]
    pub create: bool,
    /// Partitions of created input/state/repartition topics (an existing input topic's
    /// count wins for the internal topics). Default 12.
    #[serde(default = "d_partitions")]
    pub partitions: i32,
    /// Partitions of created output and dead-letter topics. Default 12.
    #[serde(default = "d_partitions")]
    pub output_partitions: i32,
    /// Replication factor of created topics. Default 3.
    #[serde(default = "d_replication")]
    pub replication_factor: i32,
}

/// `[runtime]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Processing threads, 1–64. Each is a member of the consumer group of its own
    /// (instance `<instance_id>-t<k>` for k ≥ 1; thread 0 keeps `<instance_id>`) with its
    /// own consumers and transactional producers, and owns the partitions the group assigns
    /// it: no state and no lock is shared per record, and a rebalance moves partitions
    /// between threads as between replicas. Default 1 (see docs/operations.md: the broker
    /// often shares the machine).
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Partitions the process restores at once, 1–64 (its threads share the bound); `None`
    /// = the machine's cores, at least 2. Each restore holds its own clients (~20 threads,
    /// ~1 MiB each), and reading and building state is CPU work: more at once finish no
    /// sooner and raise the peak RSS. A restore waiting on the broker (held offsets, an
    /// undecided transaction) does not count against it.
    #[serde(default)]
    pub parallel_restores: Option<usize>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            threads: d_threads(),
            parallel_restores: None,
        }
    }
}

impl RuntimeConfig {
    /// `parallel_restores`, or its default.
    pub fn parallel_restores(&self) -> usize {
        self.parallel_restores.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 64)
        })
    }
}

fn d_threads() -> usize {
    1
}

/// `[engine]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineLimits {
    /// Tickets whose events wait for their `opened`, per partition. Default 10000.
    #[serde(default = "d_preopen_max_tickets")]
    pub preopen_max_tickets: usize,
    /// How long (event time) such events wait, secs. Default 3600.
    #[serde(default = "d_preopen_max_age_secs")]
    pub preopen_max_age_secs: u64,
    /// How long a closed ticket's tombstone is kept (event time), secs. Default 604800 (7 d).
    #[serde(default = "d_closed_retention_secs")]
    pub closed_retention_secs: u64,
    /// Tickets without events for this long (event time) are dropped, secs.
    /// Default 2592000 (30 d).
    #[serde(default = "d_idle_ttl_secs")]
    pub idle_ttl_secs: u64,
    /// Open tickets per partition; beyond it new tickets are dead-lettered (`capacity`).
    /// 0 = unlimited. Default 0.
    #[serde(default)]
    pub max_open_tickets_per_partition: usize,
}

fn d_group_id() -> String {
    "slawatch".into()
}
fn d_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "slawatch-0".into())
}
fn d_input_topics() -> Vec<String> {
    vec!["conversations".into()]
}
fn d_allowed_lateness_ms() -> u64 {
    1000
}
fn d_commit_interval_ms() -> u64 {
    100
}
fn d_true() -> bool {
    true
}
fn d_transaction_timeout_ms() -> u64 {
    10_000
}
fn d_admin_listen() -> SocketAddr {
    "127.0.0.1:9898".parse().unwrap()
}
fn d_max_clock_skew_secs() -> u64 {
    300
}
fn d_max_record_bytes() -> usize {
    1 << 20
}
fn d_fetch_queue_kbytes() -> u64 {
    8 * 1024
}
fn d_producer_queue_kbytes() -> u64 {
    64 * 1024
}
fn d_shutdown_timeout_ms() -> u64 {
    10_000
}
fn d_breaches() -> String {
    "sla.breaches".into()
}
fn d_warnings() -> String {
    "sla.warnings".into()
}
fn d_escalations() -> String {
    "sla.escalations".into()
}
fn d_reminders() -> String {
    "sla.reminders".into()
}
fn d_surges() -> String {
    "sla.surges".into()
}
fn d_dead_letters() -> String {
    "sla.dead-letters".into()
}
fn d_state() -> String {
    "slawatch.state".into()
}
fn d_surge_repartition() -> String {
    "slawatch.surge-repartition".into()
}
fn d_surge_state() -> String {
    "slawatch.surge-state".into()
}
fn d_partitions() -> i32 {
    12
}
fn d_replication() -> i32 {
    3
}
fn d_preopen_max_tickets() -> usize {
    10_000
}
fn d_preopen_max_age_secs() -> u64 {
    3600
}
fn d_closed_retention_secs() -> u64 {
    7 * 86_400
}
fn d_idle_ttl_secs() -> u64 {
    30 * 86_400
}

impl Default for TopicsConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}
impl Default for EngineLimits {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

/// Configuration errors, each naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `origin` is `file:line:column` when the position is known, and names the
    /// `SLAWATCH_*` variables that were applied when the error may come from one of them.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// Every unknown key of the file, one per line: `file:line:column: unknown key "x"
    /// [in [section]]; did you mean "y"?` (or the allowed keys when none is near).
    #[error("{}", .0.join("\n"))]
    UnknownKeys(Vec<String>),
    #[error("environment variable {var} does not name a configuration key{hint}")]
    UnknownEnv {
        var: String,
        /// `; did you mean SLAWATCH_…?` when a variable name is near, else empty.
        hint: String,
    },
    #[error("[kafka] {key:?} is set by slawatch ({why}); remove it")]
    OwnedKafkaKey { key: String, why: &'static str },
    #[error("[kafka] {key:?}: {message}")]
    KafkaProperty { key: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("topic {name:?} is used both as {first} and as {second}")]
    TopicClash {
        name: String,
        first: &'static str,
        second: &'static str,
    },
}

/// Section tables that `SLAWATCH_<SECTION>_<KEY>` variables address.
const SECTIONS: &[(&str, &[&str])] = &[
    ("topics", TOPICS_KEYS),
    ("engine", ENGINE_KEYS),
    ("runtime", RUNTIME_KEYS),
];
const TOP_LEVEL_KEYS: &[&str] = &[
    "brokers",
    "group_id",
    "instance_id",
    "input_topics",
    "input_formats",
    "policy_file",
    "allowed_lateness_ms",
    "commit_interval_ms",
    "exactly_once",
    "transaction_timeout_ms",
    "output_format",
    "admin_listen",
    "max_clock_skew_secs",
    "max_record_bytes",
    "wall_clock_watermark",
    "shutdown_timeout_ms",
    "fetch_queue_kbytes",
    "producer_queue_kbytes",
];
const TOPICS_KEYS: &[&str] = &[
    "breaches",
    "warnings",
    "escalations",
    "reminders",
    "surges",
    "dead_letters",
    "state",
    "surge_repartition",
    "surge_state",
    "create",
    "partitions",
    "output_partitions",
    "replication_factor",
];
const RUNTIME_KEYS: &[&str] = &["threads", "parallel_restores"];
const ENGINE_KEYS: &[&str] = &[
    "preopen_max_tickets",
    "preopen_max_age_secs",
    "closed_retention_secs",
    "idle_ttl_secs",
    "max_open_tickets_per_partition",
];

/// Environment variables the harness or the OS may set that are not configuration (those of
/// scripts/kafka/broker.sh, which share the `SLAWATCH_KAFKA_` prefix).
const ENV_IGNORED: &[&str] = &[
    "SLAWATCH_KAFKA_WATCH_STDIN",
    "SLAWATCH_KAFKA_WATCH_PID",
    "SLAWATCH_KAFKA_DIR",
    "SLAWATCH_KAFKA_LIBS",
    "SLAWATCH_KAFKA_HEAP",
    "SLAWATCH_KAFKA_START_TIMEOUT",
    "SLAWATCH_KAFKA_STOP_TIMEOUT",
    "SLAWATCH_KAFKA_KEEP_DATA",
    "SLAWATCH_KAFKA_FORMAT_ARGS",
    "SLAWATCH_LOG",
    "SLAWATCH_LOG_FORMAT",
];

impl Config {
    /// Reads `path`, applies the process environment, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_sources(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses `text` (named `origin` in messages), overlays `env` (only `SLAWATCH_…`
    /// variables are looked at), validates. Errors in the file carry `origin:line:column`.
    pub fn from_sources(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| located(text, origin, &e))?;
        check_file_keys(text, origin)?;
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SLAWATCH_") && !ENV_IGNORED.contains(&k.as_str()))
            .collect();
        env.sort();
        for (var, value) in &env {
            apply_env(&mut table, var, value)?;
        }
        let cfg: Config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            // The same error from the file alone is the file's: give its position.
            if let Err(file_err) = toml::from_str::<Config>(text) {
                if file_err.message() == e.message() && file_err.span().is_some() {
                    return located(text, origin, &file_err);
                }
            }
            let origin = if env.is_empty() {
                origin.to_string()
            } else {
                let vars: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
                format!("{origin} with {} from the environment", vars.join(", "))
            };
            ConfigError::Parse {
                origin,
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(Config {
            env_applied: env.into_iter().map(|(k, _)| k).collect(),
            ..cfg
        })
    }

    /// Cross-field rules.
    /// Processing thread `k`'s view of the configuration: its own group member
    /// (`instance_id` with [`thread_suffix`]).
    pub fn for_thread(&self, k: usize) -> Config {
        Config {
            instance_id: format!("{}{}", self.instance_id, thread_suffix(k)),
            ..self.clone()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |key: &'static str, message: String| Err(ConfigError::Invalid { key, message });
        if self.brokers.trim().is_empty() {
            return invalid("brokers", "must name at least one broker".into());
        }
        if self.input_topics.is_empty() {
            return invalid("input_topics", "must list at least one topic".into());
        }
        if let Some(t) = self
            .input_formats
            .keys()
            .find(|t| !self.input_topics.contains(t))
        {
            return Err(ConfigError::Invalid {
                key: "input_formats",
                message: format!("{t:?} is not one of input_topics {:?}", self.input_topics),
            });
        }
        if !(1..=64).contains(&self.runtime.threads) {
            return invalid(
                "runtime.threads",
                format!("{} must be between 1 and 64", self.runtime.threads),
            );
        }
        if let Some(n) = self.runtime.parallel_restores {
            if !(1..=64).contains(&n) {
                return invalid(
                    "runtime.parallel_restores",
                    format!("{n} must be between 1 and 64"),
                );
            }
        }
        if !valid_id(&self.group_id) {
            return invalid(
                "group_id",
                format!("{:?} must be non-empty [A-Za-z0-9._-]", self.group_id),
            );
        }
        if !valid_id(&self.instance_id) {
            return invalid(
                "instance_id",
                format!("{:?} must be non-empty [A-Za-z0-9._-]", self.instance_id),
            );
        }
        if self.commit_interval_ms == 0 || self.commit_interval_ms > 60_000 {
            return invalid("commit_interval_ms", "must be within 1..=60000".into());
        }
        if !(1000..=10_000).contains(&self.transaction_timeout_ms) {
            return invalid(
                "transaction_timeout_ms",
                "must be within 1000..=10000: a crashed replica's open transaction holds \
                 read_committed readers up to this long"
                    .into(),
            );
        }
        if self.transaction_timeout_ms <= 2 * self.commit_interval_ms {
            return invalid(
                "transaction_timeout_ms",
                format!(
                    "must exceed twice commit_interval_ms ({} ms)",
                    self.commit_interval_ms
                ),
            );
        }
        if self.allowed_lateness_ms > 86_400_000 {
            return invalid("allowed_lateness_ms", "must be at most one day".into());
        }
        if self.max_record_bytes == 0 {
            return invalid("max_record_bytes", "must be positive".into());
        }
        if self.shutdown_timeout_ms < 1000 {
            return invalid("shutdown_timeout_ms", "must be at least 1000".into());
        }
        // librdkafka's ranges: queued.max.messages.kbytes ≤ 2097151, queue.buffering.max.kbytes
        // ≤ 2147483647; below 1 MiB a fetch could not carry one record of max_record_bytes.
        if !(1024..=2_097_151).contains(&self.fetch_queue_kbytes) {
            return invalid(
                "fetch_queue_kbytes",
                "must be between 1024 (1 MiB) and 2097151".into(),
            );
        }
        if !(1024..=2_147_483_647).contains(&self.producer_queue_kbytes) {
            return invalid(
                "producer_queue_kbytes",
                "must be between 1024 (1 MiB) and 2147483647".into(),
            );
        }
        if self.topics.partitions < 1 || self.topics.output_partitions < 1 {
            return invalid(
                "topics.partitions",
                "partition counts must be positive".into(),
            );
        }
        if self.topics.replication_factor < 1 {
            return invalid("topics.replication_factor", "must be positive".into());
        }
        if self.engine.preopen_max_tickets == 0 {
            return invalid("engine.preopen_max_tickets", "must be positive".into());
        }
        // Topic names: valid and not used for two roles (outputs may share a topic).
        let mut roles: Vec<(&str, &'static str)> = Vec::new();
        for t in &self.input_topics {
            roles.push((t, "an input topic"));
        }
        roles.push((&self.topics.state, "topics.state"));
        roles.push((&self.topics.surge_repartition, "topics.surge_repartition"));
        roles.push((&self.topics.surge_state, "topics.surge_state"));
        roles.push((&self.topics.dead_letters, "topics.dead_letters"));
        let outputs = [
            (&self.topics.breaches, "topics.breaches"),
            (&self.topics.warnings, "topics.warnings"),
            (&self.topics.escalations, "topics.escalations"),
            (&self.topics.reminders, "topics.reminders"),
            (&self.topics.surges, "topics.surges"),
        ];
        for (name, role) in roles.iter().chain(
            outputs
                .iter()
                .map(|(n, r)| (n.as_str(), *r))
                .collect::<Vec<_>>()
                .iter(),
        ) {
            if !valid_topic(name) {
                return Err(ConfigError::Invalid {
                    key: role,
                    message: format!("{name:?} is not a valid topic name"),
                });
            }
        }
        for (i, (a, ra)) in roles.iter().enumerate() {
            for (b, rb) in roles.iter().skip(i + 1) {
                if a == b {
                    return Err(ConfigError::TopicClash {
                        name: a.to_string(),
                        first: ra,
                        second: rb,
                    });
                }
            }
            for (b, rb) in &outputs {
                if a == b {
                    return Err(ConfigError::TopicClash {
                        name: a.to_string(),
                        first: ra,
                        second: rb,
                    });
                }
            }
        }
        for key in self.kafka.keys() {
            if let Some((_, why)) = OWNED_KAFKA_KEYS.iter().find(|(k, _)| k == key) {
                return Err(ConfigError::OwnedKafkaKey {
                    key: key.clone(),
                    why,
                });
            }
        }
        // librdkafka knows its properties: let it check names and values now (OpenSSL
        // initialised first, as runtime::kafka::init_tls does; called directly so the config
        // does not depend on the Kafka module that depends on it).
        openssl_sys::init();
        for (key, value) in &self.kafka {
            let mut c = rdkafka::ClientConfig::new();
            c.set(key, value);
            if let Err(e) = c.create_native_config() {
                let mut message = e.to_string();
                if is_secret_kafka_key(key) && !value.is_empty() {
                    message = message.replace(value.as_str(), "****");
                }
                return Err(ConfigError::KafkaProperty {
                    key: key.clone(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// The policy `policy_file` names, or the built-in default.
    pub fn policy_source(&self) -> PolicySource {
        PolicySource::from_option(self.policy_file.clone())
    }

    /// The framing of an input topic's records (`auto` unless `input_formats` names it).
    pub fn input_format(&self, topic: &str) -> InputFormat {
        self.input_formats.get(topic).copied().unwrap_or_default()
    }

    /// A human-readable summary of the effective settings (secrets in `[kafka]` masked).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write;
        let _ = writeln!(
            s,
            "environment          = {}",
            if self.env_applied.is_empty() {
                "no SLAWATCH_* variable set".to_string()
            } else {
                self.env_applied.join(", ")
            }
        );
        let _ = writeln!(s, "brokers              = {}", self.brokers);
        let _ = writeln!(s, "group_id             = {}", self.group_id);
        let _ = writeln!(s, "instance_id          = {}", self.instance_id);
        let _ = writeln!(s, "threads              = {}", self.runtime.threads);
        let _ = writeln!(
            s,
            "parallel_restores    = {}",
            self.runtime.parallel_restores()
        );
        let _ = writeln!(s, "input_topics         = {:?}", self.input_topics);
        let formats: Vec<String> = self
            .input_topics
            .iter()
            .map(|t| format!("{t}: {}", self.input_format(t)))
            .collect();
        let _ = writeln!(s, "input formats        = {}", formats.join(", "));
        let _ = writeln!(s, "policy_file          = {}", self.policy_source());
        let _ = writeln!(s, "allowed_lateness_ms  = {}", self.allowed_lateness_ms);
        let _ = writeln!(s, "commit_interval_ms   = {}", self.commit_interval_ms);
        let _ = writeln!(
            s,
            "guarantee            = {}",
            if self.exactly_once {
                "exactly-once (transactions)"
            } else {
                "at-least-once"
            }
        );
        let _ = writeln!(
            s,
            "output_format        = {}",
            match self.output_format {
                OutputFormat::Json => "json",
                OutputFormat::Protobuf => "protobuf",
            }
        );
        let _ = writeln!(s, "admin_listen         = {}", self.admin_listen);
        let _ = writeln!(
            s,
            "fetch / producer queues = {} KiB / {} KiB",
            self.fetch_queue_kbytes, self.producer_queue_kbytes
        );
        let t = &self.topics;
        let _ = writeln!(
            s,
            "outputs              = breaches {} | warnings {} | escalations {} | reminders {} | surges {}",
            t.breaches, t.warnings, t.escalations, t.reminders, t.surges
        );
        let _ = writeln!(s, "dead letters         = {}", t.dead_letters);
        let _ = writeln!(
            s,
            "state / repartition  = {} / {} / {}",
            t.state, t.surge_repartition, t.surge_state
        );
        for (k, v) in &self.kafka {
            let secret = is_secret_kafka_key(k);
            let _ = writeln!(
                s,
                "{:<20} = {}",
                format!("kafka.{k}"),
                if secret { "****" } else { v }
            );
        }
        s
    }
}

/// `origin:line:column` of a byte offset of `text`.
fn location(text: &str, origin: &str, offset: usize) -> String {
    let (line, column) = Sink::new(text, origin).line_col(offset);
    format!("{origin}:{line}:{column}")
}

/// A TOML error of the file with its position and without the source excerpt.
fn located(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::Parse {
        origin: match e.span() {
            Some(span) => location(text, origin, span.start),
            None => origin.to_string(),
        },
        message: e.message().trim().to_string(),
    }
}

/// Unknown keys of the file itself, with their position and the nearest allowed key (the
/// whole-config deserialisation, after the environment is applied, no longer has positions).
/// `[kafka]` is a passthrough that librdkafka checks in [`Config::validate`].
fn check_file_keys(text: &str, origin: &str) -> Result<(), ConfigError> {
    let Ok(doc) = DeTable::parse(text) else {
        return Ok(()); // a syntax error: reported with its position by the caller
    };
    let mut problems = Vec::new();
    let mut unknown = |span: std::ops::Range<usize>, key: &str, section: &str, allowed: &[&str]| {
        let hint = match nearest(key, allowed.iter().copied()) {
            Some(near) => format!("did you mean \"{near}\"?"),
            None => format!("allowed keys: {}", allowed.join(", ")),
        };
        let section = if section.is_empty() {
            String::new()
        } else {
            format!(" in [{section}]")
        };
        let at = location(text, origin, span.start);
        problems.push(format!("{at}: unknown key \"{key}\"{section}; {hint}"));
    };
    let top: Vec<&str> = TOP_LEVEL_KEYS
        .iter()
        .copied()
        .chain(SECTIONS.iter().map(|&(name, _)| name))
        .chain(["kafka"])
        .collect();
    for (k, v) in doc.get_ref() {
        let key = k.get_ref().as_ref();
        let section_keys = match SECTIONS.iter().find(|&&(name, _)| name == key) {
            Some(&(_, keys)) => keys,
            None if top.contains(&key) => continue,
            None => {
                unknown(k.span(), key, "", &top);
                continue;
            }
        };
        if let DeValue::Table(t) = v.get_ref() {
            for (sk, _) in t {
                let sub = sk.get_ref().as_ref();
                if !section_keys.contains(&sub) {
                    unknown(sk.span(), sub, key, section_keys);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::UnknownKeys(problems))
    }
}

/// What processing thread `k`'s instance and transactional ids append to the replica's:
/// nothing for thread 0 (a replica with one thread keeps the ids it always had), `-t<k>`
/// for the others.
pub fn thread_suffix(k: usize) -> String {
    if k == 0 {
        String::new()
    } else {
        format!("-t{k}")
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Kafka's rule: 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn valid_topic(s: &str) -> bool {
    valid_id(s) && s.len() <= 249 && s != "." && s != ".."
}

fn parse_env_value(key: &str, raw: &str) -> toml::Value {
    if key == "input_topics" && !raw.trim_start().starts_with('[') {
        return toml::Value::Array(
            raw.split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        );
    }
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let rest = var["SLAWATCH_".len()..].to_ascii_lowercase();
    if let Some(prop) = rest.strip_prefix("kafka_") {
        let key = prop.replace('_', ".");
        let kafka = table
            .entry("kafka")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = kafka {
            t.insert(key, toml::Value::String(value.to_string()));
        }
        return Ok(());
    }
    if TOP_LEVEL_KEYS.contains(&rest.as_str()) {
        table.insert(rest.clone(), parse_env_value(&rest, value));
        return Ok(());
    }
    for &(section, known) in SECTIONS {
        if let Some(key) = rest.strip_prefix(&format!("{section}_")) {
            if known.contains(&key) {
                let t = table
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = t {
                    t.insert(key.to_string(), parse_env_value(key, value));
                }
                return Ok(());
            }
        }
    }
    let mut names: Vec<String> = TOP_LEVEL_KEYS.iter().map(|k| k.to_string()).collect();
    for &(section, keys) in SECTIONS {
        names.extend(keys.iter().map(|k| format!("{section}_{k}")));
    }
    let hint = nearest(&rest, names.iter().map(String::as_str))
        .map(|n| format!("; did you mean SLAWATCH_{}?", n.to_ascii_uppercase()))
        .unwrap_or_default();
    Err(ConfigError::UnknownEnv {
        var: var.to_string(),
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(
            text,
            "test.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn processing_threads_are_set_by_file_or_environment_and_bounded() {
        let base = "brokers = \"b\"\ninstance_id = \"i1\"";
        assert_eq!(load(base, &[]).unwrap().runtime.threads, 1);
        let file = load(&format!("{base}\n[runtime]\nthreads = 4"), &[]).unwrap();
        assert_eq!(file.runtime.threads, 4);
        let env = load(base, &[("SLAWATCH_RUNTIME_THREADS", "2")]).unwrap();
        assert_eq!(env.runtime.threads, 2);
        assert!(env.summary().contains("threads              = 2"));
        for bad in ["0", "65"] {
            let e = load(base, &[("SLAWATCH_RUNTIME_THREADS", bad)]).unwrap_err();
            assert!(e.to_string().contains("runtime.threads"), "{e}");
        }
    }

    #[test]
    fn parallel_restores_default_to_the_cores_at_least_two_and_are_bounded() {
        let base = "brokers = \"b\"\ninstance_id = \"i1\"";
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let default = load(base, &[]).unwrap();
        assert_eq!(default.runtime.parallel_restores(), cores.clamp(2, 64));
        let file = load(&format!("{base}\n[runtime]\nparallel_restores = 1"), &[]).unwrap();
        assert_eq!(file.runtime.parallel_restores(), 1);
        let env = load(base, &[("SLAWATCH_RUNTIME_PARALLEL_RESTORES", "3")]).unwrap();
        assert_eq!(env.runtime.parallel_restores(), 3);
        assert!(env.summary().contains("parallel_restores    = 3"));
        for bad in ["0", "65"] {
            let e = load(base, &[("SLAWATCH_RUNTIME_PARALLEL_RESTORES", bad)]).unwrap_err();
            assert!(e.to_string().contains("runtime.parallel_restores"), "{e}");
        }
    }

    #[test]
    fn defaults_fill_everything_but_brokers() {
        let c = load("brokers = \"b:9092\"\ninstance_id = \"i1\"", &[]).unwrap();
        assert_eq!(c.group_id, "slawatch");
        assert_eq!(c.instance_id, "i1");
        assert_eq!(c.allowed_lateness_ms, 1000);
        assert_eq!(c.commit_interval_ms, 100);
        assert!(c.exactly_once);
        assert_eq!(c.topics.breaches, "sla.breaches");
        assert_eq!(c.topics.reminders, "sla.reminders");
        assert_eq!(c.topics.state, "slawatch.state");
        assert_eq!(c.engine.preopen_max_tickets, 10_000);
        assert!(load("", &[]).is_err(), "brokers is required");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = load("brokers = \"b\"\nbrokerz = 1", &[]).unwrap_err();
        assert!(e.to_string().contains("brokerz"), "{e}");
        let e = load("brokers = \"b\"\n[topics]\nbreach = \"x\"", &[]).unwrap_err();
        assert!(e.to_string().contains("breach"), "{e}");
    }

    #[test]
    fn env_beats_file_beats_default() {
        let c = load(
            "brokers = \"file:1\"\ncommit_interval_ms = 250\n[topics]\npartitions = 3",
            &[
                ("SLAWATCH_BROKERS", "env:1"),
                ("SLAWATCH_TOPICS_PARTITIONS", "6"),
                ("SLAWATCH_EXACTLY_ONCE", "false"),
                ("SLAWATCH_INPUT_TOPICS", "a,b"),
                ("SLAWATCH_KAFKA_SASL_PASSWORD", "hunter2"),
            ],
        )
        .unwrap();
        assert_eq!(c.brokers, "env:1");
        assert_eq!(c.commit_interval_ms, 250);
        assert_eq!(c.topics.partitions, 6);
        assert!(!c.exactly_once);
        assert_eq!(c.input_topics, vec!["a", "b"]);
        assert_eq!(
            c.kafka.get("sasl.password").map(|s| s.as_str()),
            Some("hunter2")
        );
        assert!(c.summary().contains("****"));
        assert!(
            !c.summary().contains("hunter2"),
            "summary shows the password"
        );
        let debug = format!("{c:?}");
        assert!(debug.contains("sasl.password"), "{debug}");
        assert!(
            !debug.contains("hunter2"),
            "Debug shows the password: {debug}"
        );
        let e = load("brokers = \"b\"", &[("SLAWATCH_COMIT_INTERVAL_MS", "5")]).unwrap_err();
        assert!(matches!(e, ConfigError::UnknownEnv { .. }), "{e}");
    }

    #[test]
    fn kafka_passthrough_refuses_owned_keys() {
        let e = load("brokers = \"b\"\n[kafka]\n\"group.id\" = \"x\"", &[]).unwrap_err();
        assert!(
            matches!(e, ConfigError::OwnedKafkaKey { ref key, .. } if key == "group.id"),
            "{e}"
        );
        let e = load(
            "brokers = \"b\"\n[kafka]\n\"isolation.level\" = \"read_uncommitted\"",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("read_committed"), "{e}");
        let e = load(
            "brokers = \"b\"\n[kafka]\n\"no.such.property\" = \"1\"",
            &[],
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::KafkaProperty { .. }), "{e}");
        load(
            "brokers = \"b\"\n[kafka]\n\"security.protocol\" = \"plaintext\"\n\"linger.ms\" = \"10\"",
            &[],
        )
        .unwrap();
    }

    #[test]
    fn input_formats_name_input_topics() {
        let c = load(
            "brokers = \"b\"\ninput_topics = [\"a\", \"b\"]\n[input_formats]\nb = \"schema-registry-protobuf\"",
            &[],
        )
        .unwrap();
        assert_eq!(c.input_format("a"), InputFormat::Auto);
        assert_eq!(c.input_format("b"), InputFormat::SchemaRegistryProtobuf);
        assert!(c.summary().contains("a: auto, b: schema-registry-protobuf"));
        let e = load(
            "brokers = \"b\"\ninput_topics = [\"a\"]\n[input_formats]\nc = \"json\"",
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("input_formats: \"c\" is not one of"),
            "{e}"
        );
        let e = load(
            "brokers = \"b\"\ninput_topics = [\"a\"]\n[input_formats]\na = \"avro\"",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("avro"), "{e}");
        let c = load(
            "brokers = \"b\"\ninput_topics = [\"a.x\"]",
            &[("SLAWATCH_INPUT_FORMATS", "{ \"a.x\" = \"json\" }")],
        )
        .unwrap();
        assert_eq!(c.input_format("a.x"), InputFormat::Json);
    }

    #[test]
    fn cross_field_rules_are_named() {
        let e = load("brokers = \"b\"\ntransaction_timeout_ms = 60000", &[]).unwrap_err();
        assert!(e.to_string().starts_with("transaction_timeout_ms"), "{e}");
        let e = load("brokers = \"b\"\ninput_topics = [\"sla.breaches\"]", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::TopicClash { .. }), "{e}");
        let e = load("brokers = \"b\"\ninput_topics = []", &[]).unwrap_err();
        assert!(e.to_string().starts_with("input_topics"), "{e}");
        let e = load("brokers = \"b\"\n[topics]\nstate = \"bad name\"", &[]).unwrap_err();
        assert!(e.to_string().contains("not a valid topic"), "{e}");
    }
}
