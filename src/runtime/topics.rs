//! Topic names (with the shadow prefix of `--dry-run`), the routing of SLA events to their
//! topic by kind, and the start-up check that creates missing topics and verifies partition
//! counts.
use crate::core::model::OutputBody;
use crate::runtime::config::Config;
use crate::runtime::kafka::{block_on, short_lived_config, AuthWatch};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Prefix of every topic, group and transactional id a `--dry-run` replica uses.
pub const SHADOW_PREFIX: &str = "shadow.";

/// The topics one replica reads and writes, and its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    pub group_id: String,
    /// The surge stage's consumer group: `<group_id>.surge`. A group of its own so each
    /// stage's partitions are balanced across replicas independently (cooperative-sticky
    /// balances the total partition count of a member, not each topic's).
    pub surge_group_id: String,
    /// The output producers' `transactional.id`s (exactly-once runs two, used alternately:
    /// see `runtime::kafka::pipeline`): `<group_id>-<instance_id>` and the same with `:1`
    /// (`:` cannot occur in an instance id, so the second never equals another replica's
    /// first), prefixed under `--dry-run` like the group (the only place they are derived: a
    /// shadow replica must not fence the live one's producers).
    pub transactional_ids: [String; 2],
    pub inputs: Vec<String>,
    pub breaches: String,
    pub warnings: String,
    pub escalations: String,
    pub reminders: String,
    pub surges: String,
    pub dead_letters: String,
    pub state: String,
    pub repartition: String,
    pub surge_state: String,
}

impl Topics {
    /// Names from the config. With `dry_run` every output and dead-letter topic is
    /// prefixed with `shadow.`, and so are the internal topics and the group id: a shadow
    /// replica must never page anyone, nor share state, offsets or partitions with a live
    /// one (it reads the input from the start under its own group).
    pub fn new(cfg: &Config, dry_run: bool) -> Topics {
        let p = |s: &str| {
            if dry_run {
                format!("{SHADOW_PREFIX}{s}")
            } else {
                s.to_string()
            }
        };
        let t = &cfg.topics;
        Topics {
            group_id: p(&cfg.group_id),
            surge_group_id: p(&format!("{}.surge", cfg.group_id)),
            transactional_ids: [
                p(&format!("{}-{}", cfg.group_id, cfg.instance_id)),
                p(&format!("{}-{}:1", cfg.group_id, cfg.instance_id)),
            ],
            inputs: cfg.input_topics.clone(),
            breaches: p(&t.breaches),
            warnings: p(&t.warnings),
            escalations: p(&t.escalations),
            reminders: p(&t.reminders),
            surges: p(&t.surges),
            dead_letters: p(&t.dead_letters),
            state: p(&t.state),
            repartition: p(&t.surge_repartition),
            surge_state: p(&t.surge_state),
        }
    }

    /// Processing thread `k`'s names: its own transactional ids (with
    /// [`thread_suffix`](crate::runtime::config::thread_suffix)), the rest shared.
    pub fn for_thread(&self, k: usize) -> Topics {
        let suffix = crate::runtime::config::thread_suffix(k);
        let [first, _] = &self.transactional_ids;
        let base = format!("{first}{suffix}");
        Topics {
            transactional_ids: [base.clone(), format!("{base}:1")],
            ..self.clone()
        }
    }

    /// Where an SLA event goes (see [`OutputTopic::of`]).
    pub fn for_output(&self, body: &OutputBody) -> &str {
        self.output_topic(OutputTopic::of(body))
    }

    /// The name of an output topic.
    pub fn output_topic(&self, t: OutputTopic) -> &str {
        match t {
            OutputTopic::Breaches => &self.breaches,
            OutputTopic::Warnings => &self.warnings,
            OutputTopic::Escalations => &self.escalations,
            OutputTopic::Reminders => &self.reminders,
            OutputTopic::Surges => &self.surges,
        }
    }

    /// Distinct output topics (several kinds may share one).
    pub fn outputs(&self) -> Vec<&str> {
        let mut v = vec![
            self.breaches.as_str(),
            self.warnings.as_str(),
            self.escalations.as_str(),
            self.reminders.as_str(),
            self.surges.as_str(),
        ];
        v.sort();
        v.dedup();
        v
    }
}

/// The output topics, by what they carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputTopic {
    Breaches,
    Warnings,
    Escalations,
    Reminders,
    Surges,
}

impl OutputTopic {
    pub const ALL: [OutputTopic; 5] = [
        OutputTopic::Breaches,
        OutputTopic::Warnings,
        OutputTopic::Escalations,
        OutputTopic::Reminders,
        OutputTopic::Surges,
    ];

    /// Where an SLA event goes: Breach and Cleared → breaches; Warning → warnings;
    /// Escalation → escalations; ProgressReminder and FollowUpDue → reminders; surges →
    /// surges.
    pub fn of(body: &OutputBody) -> OutputTopic {
        match body {
            OutputBody::Breach { .. } | OutputBody::Cleared { .. } => OutputTopic::Breaches,
            OutputBody::Warning { .. } => OutputTopic::Warnings,
            OutputBody::Escalation { .. } => OutputTopic::Escalations,
            OutputBody::ProgressReminder { .. } | OutputBody::FollowUpDue => OutputTopic::Reminders,
            OutputBody::SurgeStarted { .. } | OutputBody::SurgeEnded { .. } => OutputTopic::Surges,
        }
    }
}

/// Start-up topic problems.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("cannot read cluster metadata: {0}")]
    Metadata(#[source] KafkaError),
    #[error(
        "Kafka authentication failed: {0} (check security.protocol, sasl.mechanism, \
         sasl.username, the password in SLAWATCH_KAFKA_SASL_PASSWORD and the ssl.* settings)"
    )]
    Authentication(String),
    #[error("topic {topic} does not exist (set topics.create = true to create it)")]
    Missing { topic: String },
    #[error("creating topic {topic} failed: {reason}")]
    Create { topic: String, reason: String },
    #[error(
        "input topics are not co-partitioned: {first} has {first_n} partitions, {other} has {other_n}"
    )]
    NotCoPartitioned {
        first: String,
        first_n: usize,
        other: String,
        other_n: usize,
    },
    #[error(
        "{role} topic {topic} has {actual} partitions but the input has {expected}: \
         its partition p holds input partition p's state; recreate it with {expected}"
    )]
    PartitionMismatch {
        role: &'static str,
        topic: String,
        actual: usize,
        expected: usize,
    },
}

/// What the check found.
#[derive(Clone, Debug)]
pub struct TopicReport {
    /// Partitions of every input topic (and of the state and repartition topics).
    pub partitions: usize,
    pub created: Vec<String>,
    /// Non-fatal findings, e.g. a state topic that is not compacted.
    pub warnings: Vec<String>,
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// One metadata request of the start-up check; between two, the client's errors are
/// looked at, so bad credentials stop the start within about this long.
const PROBE_SLICE: Duration = Duration::from_millis(500);

/// Settings of created state topics, chosen so a restore reads about one record per open
/// ticket (docs/operations.md, "State topic"): compacted; segments of 32 MiB or 10 minutes,
/// because the active segment is never compacted and a restore reads all of it; cleaned
/// once a quarter of the log is dirty (Kafka's default is half); and the tombstones of
/// freed tickets kept 1 hour instead of 24, since a restore reads those too and takes
/// seconds, not hours.
pub const STATE_TOPIC_CONFIG: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("min.compaction.lag.ms", "0"),
    ("min.cleanable.dirty.ratio", "0.25"),
    ("delete.retention.ms", "3600000"),
    ("segment.ms", "600000"),
    ("segment.bytes", "33554432"),
];

/// Creates missing topics (when `cfg.topics.create`) and checks partition counts: input
/// topics co-partitioned; the state and repartition topics with the input's count.
pub fn ensure_topics(
    cfg: &Config,
    topics: &Topics,
    describe: bool,
) -> Result<TopicReport, TopicError> {
    let admin: AdminClient<AuthWatch> = short_lived_config(cfg)
        .create_with_context(AuthWatch::default())
        .map_err(TopicError::Metadata)?;
    let mut report = TopicReport {
        partitions: 0,
        created: Vec::new(),
        warnings: Vec::new(),
    };
    let existing = partition_counts(cfg)?;
    // Inputs first: they fix the partition count.
    let mut input_n: Option<(String, usize)> = None;
    for t in &topics.inputs {
        let n = match existing.get(t) {
            Some(&n) => n,
            None => {
                create(cfg, &admin, t, cfg.topics.partitions, &[], &mut report)?;
                cfg.topics.partitions as usize
            }
        };
        match &input_n {
            None => input_n = Some((t.clone(), n)),
            Some((first, first_n)) if *first_n != n => {
                return Err(TopicError::NotCoPartitioned {
                    first: first.clone(),
                    first_n: *first_n,
                    other: t.clone(),
                    other_n: n,
                })
            }
            _ => {}
        }
    }
    let n = input_n
        .map(|(_, n)| n)
        .unwrap_or(cfg.topics.partitions as usize);
    report.partitions = n;
    for (role, topic, config) in [
        ("state", &topics.state, STATE_TOPIC_CONFIG),
        (
            "surge repartition",
            &topics.repartition,
            &[("retention.ms", "604800000")][..],
        ),
        ("surge state", &topics.surge_state, STATE_TOPIC_CONFIG),
    ] {
        match existing.get(topic) {
            Some(&actual) if actual != n => {
                return Err(TopicError::PartitionMismatch {
                    role,
                    topic: topic.clone(),
                    actual,
                    expected: n,
                })
            }
            Some(_) => {}
            None => create(cfg, &admin, topic, n as i32, config, &mut report)?,
        }
    }
    let mut others: Vec<&str> = topics.outputs();
    others.push(&topics.dead_letters);
    for t in others {
        if !existing.contains_key(t) {
            create(
                cfg,
                &admin,
                t,
                cfg.topics.output_partitions,
                &[],
                &mut report,
            )?;
        }
    }
    // A state topic that is not compacted grows forever: say so (not fatal; some clusters
    // forbid DescribeConfigs).
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let created_now = report.created.iter().any(|t| t == &topics.state);
    if !describe || created_now {
        return Ok(report);
    }
    if let Ok(results) =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(&topics.state)], &opts))
    {
        if let Some(Ok(resource)) = results.into_iter().next() {
            let policy = resource
                .entries
                .iter()
                .find(|e| e.name == "cleanup.policy")
                .and_then(|e| e.value.clone())
                .unwrap_or_default();
            if !policy.contains("compact") {
                report.warnings.push(format!(
                    "state topic {} has cleanup.policy={policy:?}; it should be compact",
                    topics.state
                ));
            }
        }
    }
    Ok(report)
}

/// The cluster's topics and their partition counts. Bad credentials and TLS failures stop
/// here at once ([`TopicError::Authentication`]): librdkafka only reports them to the
/// client's error callback, so a plain metadata request would wait out its timeout. The
/// request is made by a producer (whose poll serves that callback; an admin client's never
/// does), in short slices, up to [`ADMIN_TIMEOUT`] in all (brokers that are down may come
/// back).
fn partition_counts(cfg: &Config) -> Result<BTreeMap<String, usize>, TopicError> {
    let probe: BaseProducer<AuthWatch> = short_lived_config(cfg)
        .create_with_context(AuthWatch::default())
        .map_err(TopicError::Metadata)?;
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    let md = loop {
        let r = probe.client().fetch_metadata(None, PROBE_SLICE);
        probe.poll(Duration::ZERO);
        match r {
            Ok(md) => break md,
            Err(e) => {
                if let Some(why) = probe.context().failure.get() {
                    return Err(TopicError::Authentication(why));
                }
                if Instant::now() >= deadline {
                    return Err(TopicError::Metadata(e));
                }
            }
        }
    };
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect())
}

fn create(
    cfg: &Config,
    admin: &AdminClient<AuthWatch>,
    topic: &str,
    partitions: i32,
    config: &[(&str, &str)],
    report: &mut TopicReport,
) -> Result<(), TopicError> {
    if !cfg.topics.create {
        return Err(TopicError::Missing {
            topic: topic.to_string(),
        });
    }
    let mut nt = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(cfg.topics.replication_factor),
    );
    for (k, v) in config {
        nt = nt.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = block_on(admin.create_topics([&nt], &opts)).map_err(|e| TopicError::Create {
        topic: topic.to_string(),
        reason: e.to_string(),
    })?;
    for r in results {
        match r {
            Ok(_) => report.created.push(topic.to_string()),
            // Another replica created it meanwhile.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(TopicError::Create {
                    topic: topic.to_string(),
                    reason: code.to_string(),
                })
            }
        }
    }
    // Wait until the metadata shows leaders, so the first produce does not race creation.
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    while std::time::Instant::now() < deadline {
        let ok = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|md| {
                md.topics().iter().find(|t| t.name() == topic).map(|t| {
                    t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions()
                            .iter()
                            .all(|p| p.error().is_none() && p.leader() >= 0)
                })
            })
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(TopicError::Create {
        topic: topic.to_string(),
        reason: "no partition leaders after creation".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_processing_thread_has_its_own_instance_and_transactional_ids() {
        let cfg = Config::from_sources(
            "brokers = \"b\"\ninstance_id = \"i1\"\n[runtime]\nthreads = 3",
            "t",
            Vec::new(),
        )
        .unwrap();
        for dry_run in [false, true] {
            let topics = Topics::new(&cfg, dry_run);
            for k in 0..3 {
                // The thread's ids are those of a replica named after the thread.
                let direct = Topics::new(&cfg.for_thread(k), dry_run);
                assert_eq!(
                    topics.for_thread(k).transactional_ids,
                    direct.transactional_ids
                );
                assert_eq!(topics.for_thread(k).group_id, topics.group_id);
            }
        }
        let t = Topics::new(&cfg, false);
        assert_eq!(t.for_thread(0).transactional_ids, t.transactional_ids);
        assert_eq!(
            t.for_thread(2).transactional_ids,
            ["slawatch-i1-t2", "slawatch-i1-t2:1"]
        );
        assert_eq!(cfg.for_thread(0).instance_id, "i1");
        assert_eq!(cfg.for_thread(1).instance_id, "i1-t1");
    }

    #[test]
    fn routing_and_shadow_prefix() {
        let cfg =
            Config::from_sources("brokers = \"b\"\ninstance_id = \"i1\"", "t", Vec::new()).unwrap();
        let t = Topics::new(&cfg, false);
        assert_eq!(
            t.for_output(&OutputBody::Cleared {
                overdue: Default::default()
            }),
            "sla.breaches"
        );
        assert_eq!(t.for_output(&OutputBody::FollowUpDue), "sla.reminders");
        assert_eq!(t.outputs().len(), 5);
        let s = Topics::new(&cfg, true);
        assert_eq!(s.breaches, "shadow.sla.breaches");
        assert_eq!(s.dead_letters, "shadow.sla.dead-letters");
        assert_eq!(s.state, "shadow.slawatch.state");
        assert_eq!(s.group_id, "shadow.slawatch");
        assert_eq!(s.surge_group_id, "shadow.slawatch.surge");
        assert_eq!(t.transactional_ids, ["slawatch-i1", "slawatch-i1:1"]);
        assert_eq!(
            s.transactional_ids,
            ["shadow.slawatch-i1", "shadow.slawatch-i1:1"]
        );
        assert_eq!(t.surge_state, "slawatch.surge-state");
        assert_eq!(s.inputs, vec!["conversations"]);
    }
}
