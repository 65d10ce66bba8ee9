//! The label values a metric may carry: small fixed sets of typed values, and the three
//! bounded runtime sets (policy, rule, partition).
use super::*;

// ---------------------------------------------------------------------------------------------
// Label sets
// ---------------------------------------------------------------------------------------------

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }
        impl $name {
            /// Every value, i.e. the whole label set.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

label_enum!(
    /// The SLA latency a sample belongs to.
    LatencyKind { FirstResponse => "first_response", NextResponse => "next_response", Resolution => "resolution" }
);

impl LatencyKind {
    /// The histogram this kind records into.
    pub const fn histogram(self) -> &'static str {
        match self {
            LatencyKind::FirstResponse => FIRST_RESPONSE_SECONDS,
            LatencyKind::NextResponse => NEXT_RESPONSE_SECONDS,
            LatencyKind::Resolution => RESOLUTION_SECONDS,
        }
    }
    /// The (p50, p95) in-process gauges of this kind.
    pub const fn quantile_gauges(self) -> (&'static str, &'static str) {
        match self {
            LatencyKind::FirstResponse => (FIRST_RESPONSE_P50_SECONDS, FIRST_RESPONSE_P95_SECONDS),
            LatencyKind::NextResponse => (NEXT_RESPONSE_P50_SECONDS, NEXT_RESPONSE_P95_SECONDS),
            LatencyKind::Resolution => (RESOLUTION_P50_SECONDS, RESOLUTION_P95_SECONDS),
        }
    }
    /// The histogram a clock's `metric` names.
    pub const fn of(metric: LatencyMetric) -> LatencyKind {
        match metric {
            LatencyMetric::FirstResponse => LatencyKind::FirstResponse,
            LatencyMetric::NextResponse => LatencyKind::NextResponse,
            LatencyMetric::Resolution => LatencyKind::Resolution,
        }
    }
}

label_enum!(
    /// Kind of an SLA output event (`kind` on `slawatch_sla_outputs_total`).
    OutputKind {
        Warning => "warning",
        Breach => "breach",
        Escalation => "escalation",
        ProgressReminder => "progress_reminder",
        FollowUpDue => "follow_up_due",
        Cleared => "cleared",
        SurgeStarted => "surge_started",
        SurgeEnded => "surge_ended",
    }
);

impl OutputKind {
    pub fn of(body: &OutputBody) -> OutputKind {
        match body {
            OutputBody::Warning { .. } => OutputKind::Warning,
            OutputBody::Breach { .. } => OutputKind::Breach,
            OutputBody::Escalation { .. } => OutputKind::Escalation,
            OutputBody::ProgressReminder { .. } => OutputKind::ProgressReminder,
            OutputBody::FollowUpDue => OutputKind::FollowUpDue,
            OutputBody::Cleared { .. } => OutputKind::Cleared,
            OutputBody::SurgeStarted { .. } => OutputKind::SurgeStarted,
            OutputBody::SurgeEnded { .. } => OutputKind::SurgeEnded,
        }
    }
    /// Kinds emitted by a ticket's clocks (all but the surge kinds).
    pub const TICKET_KINDS: &'static [OutputKind] = &[
        OutputKind::Warning,
        OutputKind::Breach,
        OutputKind::Escalation,
        OutputKind::ProgressReminder,
        OutputKind::FollowUpDue,
        OutputKind::Cleared,
    ];
}

label_enum!(
    /// Wire format of an input record, as read (codec::framing::WireFormat).
    FormatLabel {
        Json => "json",
        Protobuf => "protobuf",
        SchemaRegistryJson => "schema-registry-json",
        SchemaRegistryProtobuf => "schema-registry-protobuf",
        /// None of them (dead-lettered), or a content-type header slawatch does not read.
        Unrecognised => "unrecognised",
    }
);

label_enum!(
    /// Why a record went to the dead-letter topic. The same text is the dead-letter record's
    /// `reason` header.
    RejectReason {
        /// Bytes that decode as neither protobuf nor proto3 JSON.
        Undecodable => "undecodable",
        /// A content-type header slawatch does not read.
        ContentType => "content_type",
        /// No body, ticket id, event id or timestamp.
        MissingField => "missing_field",
        /// E.g. `urgency_changed` to UNSPECIFIED, `escalated` to an UNSPECIFIED role.
        InvalidValue => "invalid_value",
        /// Record key ≠ ticket id.
        KeyMismatch => "key_mismatch",
        /// occurred_at too far ahead of the Kafka record timestamp.
        ClockSkew => "clock_skew",
        /// Record larger than the configured maximum.
        Oversize => "oversize",
        /// Pre-open buffer full.
        PreopenOverflow => "preopen_overflow",
        /// Waited in the pre-open buffer longer than its bound.
        PreopenExpired => "preopen_expired",
        /// Open-ticket cap of the partition reached.
        Capacity => "capacity",
        /// The ticket was dropped by `idle_ttl` or is past `closed_retention` (rule 9).
        TicketExpired => "ticket_expired",
    }
);

impl RejectReason {
    /// The reason of a label text (the dead-letter `reason` header), if it is one.
    pub fn from_label(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl From<&crate::codec::DecodeError> for RejectReason {
    fn from(e: &crate::codec::DecodeError) -> RejectReason {
        use crate::codec::DecodeError as E;
        match e {
            E::Undecodable { .. } | E::Unrecognised(_) => RejectReason::Undecodable,
            E::ContentType(_) => RejectReason::ContentType,
            E::MissingField(_) => RejectReason::MissingField,
            E::InvalidValue(_) => RejectReason::InvalidValue,
        }
    }
}

impl From<Option<crate::codec::framing::WireFormat>> for FormatLabel {
    fn from(f: Option<crate::codec::framing::WireFormat>) -> FormatLabel {
        use crate::codec::framing::WireFormat as W;
        match f {
            Some(W::Json) => FormatLabel::Json,
            Some(W::Protobuf) => FormatLabel::Protobuf,
            Some(W::SchemaRegistryJson) => FormatLabel::SchemaRegistryJson,
            Some(W::SchemaRegistryProtobuf) => FormatLabel::SchemaRegistryProtobuf,
            None => FormatLabel::Unrecognised,
        }
    }
}

impl From<crate::codec::Format> for FormatLabel {
    fn from(f: crate::codec::Format) -> FormatLabel {
        match f {
            crate::codec::Format::Json => FormatLabel::Json,
            crate::codec::Format::Protobuf => FormatLabel::Protobuf,
        }
    }
}

label_enum!(
    /// Consumer-group rebalance callback.
    RebalanceKind { Assign => "assign", Revoke => "revoke", Lost => "lost" }
);

label_enum!(
    /// Dimension of a surge (R26): tenant × channel or tenant × complaint category.
    SurgeDimension { Channel => "channel", Category => "category" }
);

impl SurgeDimension {
    /// The dimension of a surge output: by channel when it names one, else by category.
    pub fn of(channel: Channel) -> SurgeDimension {
        if channel != Channel::Unspecified {
            SurgeDimension::Channel
        } else {
            SurgeDimension::Category
        }
    }
}

label_enum!(
    /// Direction of a surge transition.
    SurgeTransition { Started => "started", Ended => "ended" }
);

label_enum!(
    /// How a release of held offsets or state partitions ended (see
    /// `runtime::changelog::held`).
    HeldRelease { Aborted => "aborted", Committed => "committed", RolledForward => "rolled_forward" }
);

label_enum!(
    /// Outcome of a Kafka transaction.
    TxnOutcome { Committed => "committed", Aborted => "aborted" }
);

label_enum!(
    /// Why the processor's Kafka work failed (`runtime::kafka::txn::TxnError` and the
    /// consumer / restore failures), by the operation that failed.
    ErrorReason {
        BeginTransaction => "begin_transaction",
        SendOffsets => "send_offsets",
        CommitTransaction => "commit_transaction",
        AbortTransaction => "abort_transaction",
        CommitOffsets => "commit_offsets",
        Produce => "produce",
        Delivery => "delivery",
        Undelivered => "undelivered",
        CommitStuck => "commit_stuck",
        NoGroupMetadata => "no_group_metadata",
        ConsumerFatal => "consumer_fatal",
        Restore => "restore",
    }
);

/// Distinct `policy` label values before further ones read `other`.
pub const MAX_POLICY_LABELS: usize = 64;
/// Distinct `rule` label values before further ones read `other`.
pub const MAX_RULE_LABELS: usize = 128;
/// Partition numbers at or above this read `overflow`.
pub const MAX_PARTITION_LABELS: i32 = 1024;
/// Label value for values past a cap.
pub const OTHER_LABEL: &str = "other";
/// Label value for an empty policy or rule id (e.g. surge outputs without a policy).
pub const NONE_LABEL: &str = "none";

/// Interns runtime label values up to a fixed number of distinct values; the rest read
/// [`OTHER_LABEL`]. Guards the `policy` and `rule` labels against unbounded input.
pub struct BoundedLabels {
    cap: usize,
    values: RwLock<HashMap<Box<str>, SharedString>>,
}

impl BoundedLabels {
    pub fn new(cap: usize) -> BoundedLabels {
        BoundedLabels {
            cap,
            values: RwLock::new(HashMap::new()),
        }
    }

    /// The label value for `v`: `v` itself while fewer than `cap` distinct values were seen,
    /// `none` for the empty string, `other` past the cap.
    pub fn get(&self, v: &str) -> SharedString {
        if v.is_empty() {
            return SharedString::const_str(NONE_LABEL);
        }
        if let Some(s) = self.values.read().unwrap_or_else(|e| e.into_inner()).get(v) {
            return s.clone();
        }
        let mut map = self.values.write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = map.get(v) {
            return s.clone();
        }
        if map.len() >= self.cap {
            return SharedString::const_str(OTHER_LABEL);
        }
        let shared = SharedString::from_shared(Arc::<str>::from(v));
        map.insert(v.into(), shared.clone());
        shared
    }

    /// Distinct values interned so far.
    pub fn len(&self) -> usize {
        self.values.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn policy_labels() -> &'static BoundedLabels {
    static P: OnceLock<BoundedLabels> = OnceLock::new();
    P.get_or_init(|| BoundedLabels::new(MAX_POLICY_LABELS))
}

fn rule_labels() -> &'static BoundedLabels {
    static R: OnceLock<BoundedLabels> = OnceLock::new();
    R.get_or_init(|| BoundedLabels::new(MAX_RULE_LABELS))
}

/// `policy` label of a policy id (bounded).
pub fn policy_label(policy: &str) -> SharedString {
    policy_labels().get(policy)
}

/// `rule` label of a rule id (bounded).
pub fn rule_label(rule: &str) -> SharedString {
    rule_labels().get(rule)
}

/// `partition` label: the number, or `overflow` past [`MAX_PARTITION_LABELS`] (or negative).
pub fn partition_label(partition: i32) -> SharedString {
    if (0..MAX_PARTITION_LABELS).contains(&partition) {
        SharedString::from_owned(partition.to_string())
    } else {
        SharedString::const_str("overflow")
    }
}

/// `level` label of an escalation level: `0` … `9`, then `10_plus`.
pub const fn level_label(level: u32) -> &'static str {
    const LEVELS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    if level < 10 {
        LEVELS[level as usize]
    } else {
        "10_plus"
    }
}

/// `channel` label.
pub fn channel_label(channel: Channel) -> &'static str {
    channel.as_str()
}

/// `urgency` label: the effective urgency (UNSPECIFIED counts as general, as in matching).
pub fn urgency_label(urgency: Urgency) -> &'static str {
    urgency.effective().as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::Category;

    #[test]
    fn label_sets_are_fixed_and_distinct() {
        fn check(values: &[&str]) {
            let set: std::collections::HashSet<_> = values.iter().collect();
            assert_eq!(set.len(), values.len());
            for v in values {
                assert!(v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            }
        }
        check(
            &RejectReason::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>(),
        );
        check(
            &OutputKind::ALL
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>(),
        );
        assert_eq!(RejectReason::ALL.len(), 11);
        assert_eq!(RejectReason::Capacity.as_str(), "capacity");
        assert_eq!(
            RebalanceKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>(),
            ["assign", "revoke", "lost"]
        );
    }

    #[test]
    fn codec_reasons_and_formats_map_to_the_same_labels() {
        use crate::codec::DecodeError;
        let errors = [
            DecodeError::Undecodable {
                format: "json",
                detail: String::new(),
            },
            DecodeError::ContentType("text/plain".into()),
            DecodeError::MissingField("ticket_id"),
            DecodeError::InvalidValue(String::new()),
            DecodeError::Unrecognised(String::new()),
        ];
        for e in &errors {
            assert_eq!(RejectReason::from(e).as_str(), e.reason());
            assert_eq!(
                RejectReason::from_label(e.reason()),
                Some(RejectReason::from(e))
            );
        }
        for f in [crate::codec::Format::Json, crate::codec::Format::Protobuf] {
            assert_eq!(FormatLabel::from(f).as_str(), f.as_str());
        }
        {
            use crate::codec::framing::WireFormat as W;
            for f in [
                W::Json,
                W::Protobuf,
                W::SchemaRegistryJson,
                W::SchemaRegistryProtobuf,
            ] {
                assert_eq!(FormatLabel::from(Some(f)).as_str(), f.as_str());
            }
            assert_eq!(FormatLabel::from(None).as_str(), "unrecognised");
        }
        assert_eq!(RejectReason::from_label("nope"), None);
    }

    #[test]
    fn output_kind_matches_core_kind_names() {
        let bodies = [
            OutputBody::Warning { fraction: 0.8 },
            OutputBody::Breach {
                overdue: Default::default(),
            },
            OutputBody::Escalation {
                level: 1,
                notify: Arc::from(vec![]),
                reason: Arc::from(""),
            },
            OutputBody::ProgressReminder {
                nth: 1,
                interval: Default::default(),
            },
            OutputBody::FollowUpDue,
            OutputBody::SurgeStarted {
                channel: Channel::Chat,
                category: Category::Unspecified,
                observed_per_min: 0.0,
                baseline_per_min: 0.0,
                ratio: 0.0,
            },
            OutputBody::SurgeEnded {
                channel: Channel::Unspecified,
                category: Category::Complaint,
                observed_per_min: 0.0,
                baseline_per_min: 0.0,
            },
            OutputBody::Cleared {
                overdue: Default::default(),
            },
        ];
        assert_eq!(bodies.len(), OutputKind::ALL.len());
        for b in &bodies {
            assert_eq!(OutputKind::of(b).as_str(), b.kind_name());
        }
    }

    #[test]
    fn label_mapping() {
        assert_eq!(level_label(0), "0");
        assert_eq!(level_label(3), "3");
        assert_eq!(level_label(9), "9");
        assert_eq!(level_label(10), "10_plus");
        assert_eq!(level_label(u32::MAX), "10_plus");
        assert_eq!(&*partition_label(0), "0");
        assert_eq!(&*partition_label(17), "17");
        assert_eq!(&*partition_label(-1), "overflow");
        assert_eq!(&*partition_label(MAX_PARTITION_LABELS), "overflow");
        assert_eq!(urgency_label(Urgency::Unspecified), "general");
        assert_eq!(urgency_label(Urgency::Urgent), "urgent");
        for c in Channel::ALL {
            assert_eq!(channel_label(*c), c.as_str());
        }
        assert_eq!(SurgeDimension::of(Channel::Chat), SurgeDimension::Channel);
        assert_eq!(
            SurgeDimension::of(Channel::Unspecified),
            SurgeDimension::Category
        );
        for (metric, name) in crate::core::policy::LATENCY_METRICS.iter().copied() {
            assert_eq!(LatencyKind::of(metric).as_str(), name);
        }
    }

    #[test]
    fn bounded_labels_cap_distinct_values() {
        let b = BoundedLabels::new(3);
        assert_eq!(&*b.get("chat"), "chat");
        assert_eq!(&*b.get("urgent"), "urgent");
        assert_eq!(&*b.get(""), NONE_LABEL);
        assert_eq!(&*b.get("general"), "general");
        assert_eq!(&*b.get("complaint"), OTHER_LABEL);
        assert_eq!(&*b.get("ticket-123456"), OTHER_LABEL);
        assert_eq!(&*b.get("chat"), "chat");
        assert_eq!(b.len(), 3);
    }
}
