//! Domain types of the SLA core: ticket attributes, input events and SLA outputs. They mirror
//! the protobuf contract but carry no generated code; `crate::codec` converts at the edges.
use crate::core::time::{Dur, Ts};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

macro_rules! domain_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $num:literal => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum $name {
            #[default]
            Unspecified = 0,
            $($variant = $num),+
        }
        impl $name {
            /// All specified values (without `Unspecified`).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The lower-case name used in policy files, e.g. `chat`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $name::Unspecified => "unspecified",
                    $($name::$variant => $text),+
                }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    "unspecified" => Some($name::Unspecified),
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
            pub fn from_i32(v: i32) -> Option<$name> {
                match v {
                    0 => Some($name::Unspecified),
                    $($num => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

domain_enum!(Channel { Chat = 1 => "chat", Phone = 2 => "phone", Email = 3 => "email", Social = 4 => "social", Web = 5 => "web" });
domain_enum!(Category { Inquiry = 1 => "inquiry", Complaint = 2 => "complaint", AfterSales = 3 => "after_sales", Technical = 4 => "technical", Suggestion = 5 => "suggestion" });
domain_enum!(
    /// `Unspecified` is treated as `General` when matching.
    Urgency { General = 1 => "general", Important = 2 => "important", Urgent = 3 => "urgent" }
);
domain_enum!(
    /// `Unspecified` is treated as `Standard` when matching.
    Tier { Standard = 1 => "standard", Vip = 2 => "vip" }
);
domain_enum!(Role { Agent = 1 => "agent", TeamLead = 2 => "team_lead", Supervisor = 3 => "supervisor", DepartmentHead = 4 => "department_head" });
domain_enum!(ReplyKind { Answer = 1 => "answer", Eta = 2 => "eta", Progress = 3 => "progress", Solution = 4 => "solution" });
domain_enum!(Audience { Customer = 1 => "customer", Internal = 2 => "internal" });

impl Urgency {
    pub fn effective(self) -> Urgency {
        if self == Urgency::Unspecified {
            Urgency::General
        } else {
            self
        }
    }
}
impl Tier {
    pub fn effective(self) -> Tier {
        if self == Tier::Unspecified {
            Tier::Standard
        } else {
            self
        }
    }
}

/// Protobuf enum value names, as the JSON mapping and surge keys spell them.
impl Channel {
    pub fn proto_name(self) -> &'static str {
        match self {
            Channel::Unspecified => "CHANNEL_UNSPECIFIED",
            Channel::Chat => "CHANNEL_CHAT",
            Channel::Phone => "CHANNEL_PHONE",
            Channel::Email => "CHANNEL_EMAIL",
            Channel::Social => "CHANNEL_SOCIAL",
            Channel::Web => "CHANNEL_WEB",
        }
    }
}
impl Category {
    pub fn proto_name(self) -> &'static str {
        match self {
            Category::Unspecified => "CATEGORY_UNSPECIFIED",
            Category::Inquiry => "CATEGORY_INQUIRY",
            Category::Complaint => "CATEGORY_COMPLAINT",
            Category::AfterSales => "CATEGORY_AFTER_SALES",
            Category::Technical => "CATEGORY_TECHNICAL",
            Category::Suggestion => "CATEGORY_SUGGESTION",
        }
    }
}

/// What a ticket is matched on: set by `opened`, urgency changed by `urgency_changed`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TicketAttrs {
    pub channel: Channel,
    pub category: Category,
    pub urgency: Urgency,
    pub tier: Tier,
    pub tenant: CompactString,
    pub team: CompactString,
}

/// A ticket's identity (rule 11): two tenants' tickets with the same id are two tickets.
/// The tenant is empty when the input names none.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketKey {
    pub tenant: CompactString,
    pub id: CompactString,
}

impl TicketKey {
    pub fn of(ev: &Event) -> TicketKey {
        TicketKey {
            tenant: ev.tenant.clone(),
            id: ev.ticket_id.clone(),
        }
    }
}

/// `tenant/id`, or the bare id for a ticket without tenant (logs and test keys).
impl std::fmt::Display for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tenant.is_empty() {
            f.write_str(&self.id)
        } else {
            write!(f, "{}/{}", self.tenant, self.id)
        }
    }
}

/// One conversation event, validated (see `crate::codec` for the checks of rule 9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: CompactString,
    pub ticket_id: CompactString,
    pub occurred_at: Ts,
    pub tenant: CompactString,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Body {
    Opened {
        channel: Channel,
        category: Category,
        urgency: Urgency,
        tier: Tier,
        team: CompactString,
    },
    CustomerMessage,
    AgentMessage {
        kind: ReplyKind,
        audience: Audience,
    },
    AutoReply,
    Assigned,
    Transferred {
        misrouted: bool,
    },
    UrgencyChanged(Urgency),
    Escalated(Role),
    EscalationAnswered(Role),
    DepartmentRequested,
    HandedToDepartment,
    DepartmentStarted,
    WaitingOnCustomer,
    Resolved,
    Feedback {
        satisfied: Option<bool>,
    },
    Reopened,
    FollowUpDone,
    Closed,
    OnHold,
    Resumed,
}

/// One SLA output, in domain form. `crate::codec` turns it into `slawatch.v1.SlaEvent`.
#[derive(Clone, Debug, PartialEq)]
pub struct SlaOutput {
    /// Deterministic id (see `output_id`).
    pub event_id: OutputId,
    /// Empty for surge events.
    pub ticket_id: CompactString,
    pub tenant: CompactString,
    pub policy_id: Arc<str>,
    pub rule_id: Arc<str>,
    pub clock: Arc<str>,
    pub deadline: Ts,
    pub target: Option<Dur>,
    pub fired_at: Ts,
    pub body: OutputBody,
    /// The clock's position in the policy file, for the output order of rule 3.
    pub clock_pos: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutputBody {
    Warning {
        fraction: f64,
    },
    Breach {
        overdue: Dur,
    },
    Escalation {
        level: u32,
        notify: Arc<[Role]>,
        reason: Arc<str>,
    },
    ProgressReminder {
        nth: u32,
        interval: Dur,
    },
    FollowUpDue,
    SurgeStarted {
        channel: Channel,
        category: Category,
        observed_per_min: f64,
        baseline_per_min: f64,
        ratio: f64,
    },
    SurgeEnded {
        channel: Channel,
        category: Category,
        observed_per_min: f64,
        baseline_per_min: f64,
    },
    Cleared {
        overdue: Dur,
    },
}

impl OutputBody {
    /// Rank among outputs of one clock at one instant (rule 3): Warning < Breach <
    /// Escalation (by level) < ProgressReminder < FollowUpDue < Cleared; surges last.
    pub fn rank(&self) -> (u8, u64) {
        match self {
            OutputBody::Warning { fraction } => (0, (fraction * 1e9) as u64),
            OutputBody::Breach { .. } => (1, 0),
            OutputBody::Escalation { level, .. } => (2, *level as u64),
            OutputBody::ProgressReminder { nth, .. } => (3, *nth as u64),
            OutputBody::FollowUpDue => (4, 0),
            OutputBody::Cleared { .. } => (5, 0),
            OutputBody::SurgeStarted { .. } => (6, 0),
            OutputBody::SurgeEnded { .. } => (7, 0),
        }
    }
    pub fn kind_name(&self) -> &'static str {
        match self {
            OutputBody::Warning { .. } => "warning",
            OutputBody::Breach { .. } => "breach",
            OutputBody::Escalation { .. } => "escalation",
            OutputBody::ProgressReminder { .. } => "progress_reminder",
            OutputBody::FollowUpDue => "follow_up_due",
            OutputBody::SurgeStarted { .. } => "surge_started",
            OutputBody::SurgeEnded { .. } => "surge_ended",
            OutputBody::Cleared { .. } => "cleared",
        }
    }
}

/// What emits a ticket's output: a clock, a check or an action of the ticket's plan.
#[derive(Clone, Copy, Debug)]
pub struct Emitter<'a> {
    pub policy_id: &'a Arc<str>,
    pub rule_id: &'a Arc<str>,
    /// The clock (check, action) id: the output's `clock` and part of its id.
    pub clock: &'a Arc<str>,
    /// Position in the policy file, for rule 3's order.
    pub clock_pos: u32,
    /// The target measured, if any (actions have none).
    pub target: Option<Dur>,
}

impl SlaOutput {
    /// A ticket's output, of any kind: the one place a ticket output and its deterministic
    /// id ([`output_id`]) are built, whoever emits it.
    pub fn ticket(
        ticket_id: &str,
        tenant: &CompactString,
        by: Emitter<'_>,
        body: OutputBody,
        deadline: Ts,
        fired_at: Ts,
    ) -> SlaOutput {
        SlaOutput {
            event_id: output_id(tenant, ticket_id, by.policy_id, by.clock, &body, deadline),
            ticket_id: CompactString::from(ticket_id),
            tenant: tenant.clone(),
            policy_id: by.policy_id.clone(),
            rule_id: by.rule_id.clone(),
            clock: by.clock.clone(),
            deadline,
            target: by.target,
            fired_at,
            body,
            clock_pos: by.clock_pos,
        }
    }

    /// A surge output (rule R26) of `tenant`'s dimension `key`, at `at`: no ticket, no
    /// policy; its id hashes the key (the tenant is part of it) under clock `surge`.
    pub fn surge(tenant: &CompactString, key: &str, body: OutputBody, at: Ts) -> SlaOutput {
        SlaOutput {
            event_id: output_id("", key, "", "surge", &body, at),
            ticket_id: CompactString::default(),
            tenant: tenant.clone(),
            policy_id: "".into(),
            rule_id: "R26".into(),
            clock: "surge".into(),
            deadline: at,
            target: None,
            fired_at: at,
            body,
            clock_pos: 0,
        }
    }

    /// Total order of rule 3: fired_at, ticket id, clock position, kind. Two tenants'
    /// tickets with the same id (rule 11) are told apart by tenant, after the id.
    pub fn order_key(&self) -> (Ts, &str, &str, u32, (u8, u64)) {
        (
            self.fired_at,
            self.ticket_id.as_str(),
            self.tenant.as_str(),
            self.clock_pos,
            self.body.rank(),
        )
    }
}

/// An output's deterministic id: 128 bits, written as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputId(pub u128);

impl std::fmt::Display for OutputId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}
impl std::fmt::Debug for OutputId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// `event_id` of an output: xxh3-128 of (tenant when not empty, ticket or surge key,
/// policy, clock, kind, deadline in Unix nanoseconds, level | nth | fraction), fields joined
/// by 0x1F. Stable across versions and replays, so consumers can drop duplicates; ids of
/// tickets without tenant are those of versions before rule 11.
pub fn output_id(
    tenant: &str,
    ticket_or_key: &str,
    policy: &str,
    clock: &str,
    body: &OutputBody,
    deadline: Ts,
) -> OutputId {
    // The input is assembled on the stack and hashed in one call (xxh3's one-shot and
    // streaming forms give the same digest), numbers written without `fmt`: the streaming
    // hasher and `write!` cost ~1 000 instructions per output.
    let kind = body.kind_name();
    let strings = tenant.len() + ticket_or_key.len() + policy.len() + clock.len() + kind.len();
    if strings > ID_STRINGS_MAX {
        return output_id_streaming(tenant, ticket_or_key, policy, clock, body, deadline);
    }
    let mut buf = [0u8; ID_BUF];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        buf[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    if !tenant.is_empty() {
        put(tenant.as_bytes());
        put(b"\x1f");
    }
    for part in [ticket_or_key, policy, clock, kind] {
        put(part.as_bytes());
        put(b"\x1f");
    }
    let mut num = itoa::Buffer::new();
    put(num.format(deadline.0).as_bytes());
    put(b"\x1f");
    match body {
        OutputBody::Warning { fraction } => {
            let mut digits = [0u8; 32];
            match short_decimal(*fraction, &mut digits) {
                Some(n) => put(&digits[..n]),
                None => {
                    return output_id_streaming(
                        tenant,
                        ticket_or_key,
                        policy,
                        clock,
                        body,
                        deadline,
                    )
                }
            }
        }
        OutputBody::Escalation { level, .. } => put(num.format(*level).as_bytes()),
        OutputBody::ProgressReminder { nth, .. } => put(num.format(*nth).as_bytes()),
        _ => {}
    }
    OutputId(xxhash_rust::xxh3::xxh3_128(&buf[..len]))
}

/// Stack buffer of [`output_id`]: the strings, five separators, a deadline (≤ 20 bytes), a
/// separator and a number (≤ 32 bytes).
const ID_BUF: usize = 256;
const ID_STRINGS_MAX: usize = ID_BUF - 5 - 20 - 1 - 32;

/// [`output_id`] by its definition: a streaming hash, numbers written by `Display` (for
/// inputs too long for the stack buffer and fractions [`short_decimal`] does not take).
fn output_id_streaming(
    tenant: &str,
    ticket_or_key: &str,
    policy: &str,
    clock: &str,
    body: &OutputBody,
    deadline: Ts,
) -> OutputId {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    if !tenant.is_empty() {
        h.update(tenant.as_bytes());
        h.update(b"\x1f");
    }
    for part in [ticket_or_key, policy, clock, body.kind_name()] {
        h.update(part.as_bytes());
        h.update(b"\x1f");
    }
    let mut tail = format!("{}\x1f", deadline.0);
    match body {
        OutputBody::Warning { fraction } => tail += &fraction.to_string(),
        OutputBody::Escalation { level, .. } => tail += &level.to_string(),
        OutputBody::ProgressReminder { nth, .. } => tail += &nth.to_string(),
        _ => {}
    }
    h.update(tail.as_bytes());
    OutputId(h.digest128())
}

/// `v` as `Display` writes it (the shortest decimal that reads back as `v`), for positive
/// values below 10⁹ with at most 6 decimals — what policy fractions (`warn_at = [0.8]`)
/// are; `None` for anything else. Returns the length written.
fn short_decimal(v: f64, out: &mut [u8; 32]) -> Option<usize> {
    if !(v > 0.0 && v < 1e9) {
        return None;
    }
    let mut scale = 1.0f64;
    for decimals in 0..=6u32 {
        let m = (v * scale).round();
        // `m / scale` is the correctly rounded value of the decimal m·10^-decimals, as
        // parsing it gives: equal to `v` means this decimal reads back as `v`, and no
        // shorter one did (fewer decimals were tried first).
        if m / scale == v {
            let m = m as u64;
            let p = 10u64.pow(decimals);
            let mut num = itoa::Buffer::new();
            let int = num.format(m / p).as_bytes();
            out[..int.len()].copy_from_slice(int);
            let mut n = int.len();
            let mut frac = [0u8; 6];
            let mut r = m % p;
            for d in (0..decimals as usize).rev() {
                frac[d] = b'0' + (r % 10) as u8;
                r /= 10;
            }
            let mut k = decimals as usize;
            while k > 0 && frac[k - 1] == b'0' {
                k -= 1;
            }
            if k > 0 {
                out[n] = b'.';
                out[n + 1..n + 1 + k].copy_from_slice(&frac[..k]);
                n += 1 + k;
            }
            return Some(n);
        }
        scale *= 10.0;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition of [`output_id`]: a streaming xxh3-128 over the fields, numbers
    /// written by `Display`. The stack-buffer version must give the same ids forever.
    fn output_id_reference(
        tenant: &str,
        key: &str,
        policy: &str,
        clock: &str,
        body: &OutputBody,
        deadline: Ts,
    ) -> OutputId {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        if !tenant.is_empty() {
            h.update(tenant.as_bytes());
            h.update(b"\x1f");
        }
        for part in [key, policy, clock, body.kind_name()] {
            h.update(part.as_bytes());
            h.update(b"\x1f");
        }
        let mut tail = format!("{}\x1f", deadline.0);
        match body {
            OutputBody::Warning { fraction } => tail += &format!("{fraction}"),
            OutputBody::Escalation { level, .. } => tail += &format!("{level}"),
            OutputBody::ProgressReminder { nth, .. } => tail += &format!("{nth}"),
            _ => {}
        }
        h.update(tail.as_bytes());
        OutputId(h.digest128())
    }

    fn body_of(kind: u8, x: f64, n: u32) -> OutputBody {
        match kind % 5 {
            0 => OutputBody::Warning { fraction: x },
            1 => OutputBody::Breach { overdue: Dur(0) },
            2 => OutputBody::Escalation {
                level: n,
                notify: Arc::from(Vec::new()),
                reason: "breach".into(),
            },
            3 => OutputBody::ProgressReminder {
                nth: n,
                interval: Dur(0),
            },
            _ => OutputBody::Cleared { overdue: Dur(0) },
        }
    }

    #[test]
    fn output_ids_match_the_reference_for_policy_fractions_and_edge_numbers() {
        let fractions = [
            0.8,
            0.5,
            0.25,
            0.75,
            0.9,
            0.95,
            0.1,
            0.333,
            1.0,
            2.0,
            0.123456,
            0.1234567,
            1.0 / 3.0,
            1e-7,
            5e-324,
            0.0,
            -0.0,
            -0.5,
            1e9,
            1e300,
            f64::NAN,
            f64::INFINITY,
            123_456.7,
            999_999_999.999_999,
        ];
        for (k, f) in fractions.into_iter().enumerate() {
            for deadline in [0, -1, i64::MIN, i64::MAX, 1_709_546_400_000_000_000] {
                let body = body_of(0, f, 0);
                assert_eq!(
                    output_id("t", "T1", "chat", "first_response", &body, Ts(deadline)),
                    output_id_reference("t", "T1", "chat", "first_response", &body, Ts(deadline)),
                    "fraction #{k} {f:?}, deadline {deadline}"
                );
            }
        }
        // Longer than the stack buffer.
        let long = "x".repeat(300);
        let body = body_of(2, 0.0, u32::MAX);
        assert_eq!(
            output_id(&long, "T", "p", "c", &body, Ts(5)),
            output_id_reference(&long, "T", "p", "c", &body, Ts(5))
        );
    }

    proptest! {
        #[test]
        fn output_ids_match_the_reference(
            tenant in ".{0,30}", key in ".{0,40}", policy in "[a-z-]{0,20}",
            clock in "[a-z_]{0,20}", kind in 0u8..5, x in any::<f64>(),
            decimals in 0u32..9, mantissa in 0u64..2_000_000, n in any::<u32>(), d in any::<i64>(),
        ) {
            let body = body_of(kind, x, n);
            prop_assert_eq!(
                output_id(&tenant, &key, &policy, &clock, &body, Ts(d)),
                output_id_reference(&tenant, &key, &policy, &clock, &body, Ts(d))
            );
            // Short decimals, as policy files write them.
            let f = mantissa as f64 / 10f64.powi(decimals as i32);
            let body = body_of(0, f, n);
            prop_assert_eq!(
                output_id(&tenant, &key, &policy, &clock, &body, Ts(d)),
                output_id_reference(&tenant, &key, &policy, &clock, &body, Ts(d))
            );
        }
    }
}
