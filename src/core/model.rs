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
    // Outside `IdBuf`: zeroing an array inside it took a `memset` call.
    let mut buf = [0u8; ID_BUF];
    let mut b = IdBuf {
        buf: &mut buf,
        len: 0,
    };
    if !tenant.is_empty() {
        b.field(tenant.as_bytes());
    }
    b.field(ticket_or_key.as_bytes());
    b.field(policy.as_bytes());
    b.field(clock.as_bytes());
    b.field(kind.as_bytes());
    b.put_int(deadline.0);
    b.put(b"\x1f");
    match body {
        OutputBody::Warning { fraction } => {
            let mut digits = [0u8; 32];
            match short_decimal(*fraction, &mut digits) {
                Some(n) => b.put(&digits[..n]),
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
        OutputBody::Escalation { level, .. } => b.put_int(i64::from(*level)),
        OutputBody::ProgressReminder { nth, .. } => b.put_int(i64::from(*nth)),
        _ => {}
    }
    OutputId(xxhash_rust::xxh3::xxh3_128(b.bytes()))
}

/// The stack buffer [`output_id`] assembles its input in. Its parts are short (ids, names,
/// a 19-digit deadline): a `copy_from_slice` per part called `memcpy`, zeroing the buffer
/// called `memset`, and `itoa` wrote the deadline two digits at a time (issue 14). Parts of
/// up to 32 bytes are copied by two overlapping unaligned moves of 1, 4, 8 or 16 bytes, the
/// buffer is not zeroed (only the bytes written are read), and a deadline is written eight
/// digits at a time ([`digits8`]).
struct IdBuf<'a> {
    buf: &'a mut [u8; ID_BUF],
    len: usize,
}

impl IdBuf<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let dst = &mut self.buf[self.len..self.len + n];
        match n {
            0 => {}
            1..=3 => {
                dst[0] = bytes[0];
                dst[n / 2] = bytes[n / 2];
                dst[n - 1] = bytes[n - 1];
            }
            4..=7 => {
                dst[..4].copy_from_slice(&bytes[..4]);
                dst[n - 4..].copy_from_slice(&bytes[n - 4..]);
            }
            8..=15 => {
                dst[..8].copy_from_slice(&bytes[..8]);
                dst[n - 8..].copy_from_slice(&bytes[n - 8..]);
            }
            16..=32 => {
                dst[..16].copy_from_slice(&bytes[..16]);
                dst[n - 16..].copy_from_slice(&bytes[n - 16..]);
            }
            _ => dst.copy_from_slice(bytes),
        }
        self.len += n;
    }

    /// `bytes` and the field separator 0x1F.
    #[inline(always)]
    fn field(&mut self, bytes: &[u8]) {
        self.put(bytes);
        self.buf[self.len] = 0x1f;
        self.len += 1;
    }

    /// `v` in decimal, as `Display` writes it.
    #[inline(always)]
    fn put_int(&mut self, v: i64) {
        const E8: u64 = 100_000_000;
        const E16: u64 = E8 * E8;
        // Deadlines are nanoseconds since 1970: 19 digits.
        if v >= E16 as i64 {
            let v = v as u64;
            let top = (v / E16) as u32; // 1..=922
            let lead = 1 + usize::from(top >= 10) + usize::from(top >= 100);
            self.put(&digits8(top)[8 - lead..]);
            self.put(&digits8((v / E8 % E8) as u32));
            self.put(&digits8((v % E8) as u32));
        } else {
            let mut num = itoa::Buffer::new();
            self.put(num.format(v).as_bytes());
        }
    }

    /// The bytes written.
    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The eight decimal digits of `v < 10⁸` (leading zeros included), most significant
/// first: each digit in its own byte lane of a word, by multiplications instead of a
/// division per pair (P. Khuong, "How to print integers really fast").
#[inline(always)]
fn digits8(v: u32) -> [u8; 8] {
    debug_assert!(v < 100_000_000);
    let v = u64::from(v);
    // Two 4-digit halves in 32-bit lanes, the high half in the low lane (printed first).
    let merged = (v / 10_000) | ((v % 10_000) << 32);
    // Per lane, x / 100 (exact for x < 10 000): 2-digit halves in 16-bit lanes.
    let top = ((merged * 10_486) >> 20) & ((0x7f << 32) | 0x7f);
    let hundreds = ((merged - 100 * top) << 16) + top;
    // Per 16-bit lane, x / 10 (exact for x < 100): one digit per byte.
    let mut tens = ((hundreds * 103) >> 10) & 0x000f_000f_000f_000f;
    tens += (hundreds - 10 * tens) << 8;
    (tens | 0x3030_3030_3030_3030).to_le_bytes()
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

    #[test]
    fn digits8_writes_eight_digits() {
        let mut v = 0u32;
        let check = |v: u32| assert_eq!(digits8(v), *format!("{v:08}").as_bytes(), "{v}");
        while v < 100_000_000 {
            check(v);
            v += 9_973;
        }
        for v in (0..10_000).chain(99_990_000..100_000_000) {
            check(v);
        }
        for k in 0..8 {
            let p = 10u32.pow(k);
            check(p);
            check(p - 1);
            check(p * 9);
        }
    }

    #[test]
    fn output_ids_match_the_reference_for_every_part_length() {
        let body = body_of(2, 0.0, 7);
        for n in 0..=70 {
            let s = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(2)[..n].to_string();
            for d in [
                0,
                9_999_999_999_999_999,
                10_000_000_000_000_000,
                i64::MAX,
                -7,
            ] {
                assert_eq!(
                    output_id(&s, &s, &s[..n / 2], &s[n / 3..], &body, Ts(d)),
                    output_id_reference(&s, &s, &s[..n / 2], &s[n / 3..], &body, Ts(d)),
                    "length {n}, deadline {d}"
                );
            }
        }
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
