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

impl SlaOutput {
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
    use std::io::Write;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    if !tenant.is_empty() {
        h.update(tenant.as_bytes());
        h.update(b"\x1f");
    }
    for part in [ticket_or_key, policy, clock, body.kind_name()] {
        h.update(part.as_bytes());
        h.update(b"\x1f");
    }
    let mut buf = [0u8; 64];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{}\x1f", deadline.0);
    let _ = match body {
        OutputBody::Warning { fraction } => write!(cur, "{fraction}"),
        OutputBody::Escalation { level, .. } => write!(cur, "{level}"),
        OutputBody::ProgressReminder { nth, .. } => write!(cur, "{nth}"),
        _ => Ok(()),
    };
    let n = cur.position() as usize;
    h.update(&buf[..n]);
    OutputId(h.digest128())
}
