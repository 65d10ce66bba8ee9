//! The compiled policy: what the engine runs. Produced from TOML by `parse`; every name is
//! resolved to an index and every duration to nanoseconds, so the engine never looks up
//! strings on the hot path.
use crate::core::calendar::Calendar;
use crate::core::model::{Body, Category, Channel, ReplyKind, Role, TicketAttrs, Tier, Urgency};
use crate::core::time::Dur;
use std::sync::Arc;

/// Event matchers of docs/sla-semantics.md §1, one bit each, so an event's matches are one `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Matcher {
    Opened = 0,
    CustomerMessage,
    AgentReply,
    AgentReplyEta,
    AgentReplyProgress,
    AgentReplySolution,
    InternalProgress,
    AutoReply,
    Assigned,
    Transferred,
    TransferredMisrouted,
    Escalated,
    EscalatedAgent,
    EscalatedTeamLead,
    EscalatedSupervisor,
    EscalatedDepartmentHead,
    EscalationAnswered,
    EscalationAnsweredAgent,
    EscalationAnsweredTeamLead,
    EscalationAnsweredSupervisor,
    EscalationAnsweredDepartmentHead,
    DepartmentRequested,
    HandedToDepartment,
    DepartmentStarted,
    WaitingOnCustomer,
    OnHold,
    Resumed,
    Resolved,
    FeedbackSatisfied,
    FeedbackUnsatisfied,
    Reopened,
    FollowUpDone,
    Closed,
    UrgencyChanged,
}

impl Matcher {
    pub const ALL: &'static [(Matcher, &'static str)] = &[
        (Matcher::Opened, "opened"),
        (Matcher::CustomerMessage, "customer_message"),
        (Matcher::AgentReply, "agent_reply"),
        (Matcher::AgentReplyEta, "agent_reply:eta"),
        (Matcher::AgentReplyProgress, "agent_reply:progress"),
        (Matcher::AgentReplySolution, "agent_reply:solution"),
        (Matcher::InternalProgress, "internal:progress"),
        (Matcher::AutoReply, "auto_reply"),
        (Matcher::Assigned, "assigned"),
        (Matcher::Transferred, "transferred"),
        (Matcher::TransferredMisrouted, "transferred:misrouted"),
        (Matcher::Escalated, "escalated"),
        (Matcher::EscalatedAgent, "escalated:agent"),
        (Matcher::EscalatedTeamLead, "escalated:team_lead"),
        (Matcher::EscalatedSupervisor, "escalated:supervisor"),
        (
            Matcher::EscalatedDepartmentHead,
            "escalated:department_head",
        ),
        (Matcher::EscalationAnswered, "escalation_answered"),
        (
            Matcher::EscalationAnsweredAgent,
            "escalation_answered:agent",
        ),
        (
            Matcher::EscalationAnsweredTeamLead,
            "escalation_answered:team_lead",
        ),
        (
            Matcher::EscalationAnsweredSupervisor,
            "escalation_answered:supervisor",
        ),
        (
            Matcher::EscalationAnsweredDepartmentHead,
            "escalation_answered:department_head",
        ),
        (Matcher::DepartmentRequested, "department_requested"),
        (Matcher::HandedToDepartment, "handed_to_department"),
        (Matcher::DepartmentStarted, "department_started"),
        (Matcher::WaitingOnCustomer, "waiting_on_customer"),
        (Matcher::OnHold, "on_hold"),
        (Matcher::Resumed, "resumed"),
        (Matcher::Resolved, "resolved"),
        (Matcher::FeedbackSatisfied, "feedback:satisfied"),
        (Matcher::FeedbackUnsatisfied, "feedback:unsatisfied"),
        (Matcher::Reopened, "reopened"),
        (Matcher::FollowUpDone, "follow_up_done"),
        (Matcher::Closed, "closed"),
        (Matcher::UrgencyChanged, "urgency_changed"),
    ];

    pub fn parse(s: &str) -> Option<Matcher> {
        Matcher::ALL.iter().find(|(_, n)| *n == s).map(|(m, _)| *m)
    }
    pub fn name(self) -> &'static str {
        Matcher::ALL[self as usize].1
    }
    pub const fn bit(self) -> u64 {
        1u64 << (self as u8)
    }
}

/// A set of matchers (a bit per `Matcher`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MatcherSet(pub u64);

impl MatcherSet {
    pub const EMPTY: MatcherSet = MatcherSet(0);
    pub const fn of(ms: &[Matcher]) -> MatcherSet {
        let mut bits = 0;
        let mut i = 0;
        while i < ms.len() {
            bits |= ms[i].bit();
            i += 1;
        }
        MatcherSet(bits)
    }
    pub fn contains(self, m: Matcher) -> bool {
        self.0 & m.bit() != 0
    }
    /// True when any matcher of `self` is among an event's matches.
    pub fn hits(self, event_matches: MatcherSet) -> bool {
        self.0 & event_matches.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn names(self) -> Vec<&'static str> {
        Matcher::ALL
            .iter()
            .filter(|(m, _)| self.contains(*m))
            .map(|(_, n)| *n)
            .collect()
    }

    /// Every matcher an event satisfies.
    pub fn of_event(body: &Body) -> MatcherSet {
        use Matcher as M;
        let set = |ms: &[Matcher]| MatcherSet::of(ms);
        match body {
            Body::Opened { .. } => set(&[M::Opened]),
            Body::CustomerMessage => set(&[M::CustomerMessage]),
            Body::AgentMessage { kind, audience } => {
                use crate::core::model::Audience;
                if *audience == Audience::Internal {
                    if *kind == ReplyKind::Progress {
                        set(&[M::InternalProgress])
                    } else {
                        MatcherSet::EMPTY
                    }
                } else {
                    match kind {
                        ReplyKind::Unspecified | ReplyKind::Answer => set(&[M::AgentReply]),
                        ReplyKind::Eta => set(&[M::AgentReply, M::AgentReplyEta]),
                        ReplyKind::Progress => set(&[M::AgentReply, M::AgentReplyProgress]),
                        ReplyKind::Solution => set(&[M::AgentReply, M::AgentReplySolution]),
                    }
                }
            }
            Body::AutoReply => set(&[M::AutoReply]),
            Body::Assigned => set(&[M::Assigned]),
            Body::Transferred { misrouted } => {
                if *misrouted {
                    set(&[M::Transferred, M::TransferredMisrouted])
                } else {
                    set(&[M::Transferred])
                }
            }
            Body::UrgencyChanged(_) => set(&[M::UrgencyChanged]),
            Body::Escalated(role) => match role {
                Role::Agent => set(&[M::Escalated, M::EscalatedAgent]),
                Role::TeamLead => set(&[M::Escalated, M::EscalatedTeamLead]),
                Role::Supervisor => set(&[M::Escalated, M::EscalatedSupervisor]),
                Role::DepartmentHead => set(&[M::Escalated, M::EscalatedDepartmentHead]),
                Role::Unspecified => set(&[M::Escalated]),
            },
            Body::EscalationAnswered(role) => match role {
                Role::Agent => set(&[M::EscalationAnswered, M::EscalationAnsweredAgent]),
                Role::TeamLead => set(&[M::EscalationAnswered, M::EscalationAnsweredTeamLead]),
                Role::Supervisor => set(&[M::EscalationAnswered, M::EscalationAnsweredSupervisor]),
                Role::DepartmentHead => {
                    set(&[M::EscalationAnswered, M::EscalationAnsweredDepartmentHead])
                }
                Role::Unspecified => set(&[M::EscalationAnswered]),
            },
            Body::DepartmentRequested => set(&[M::DepartmentRequested]),
            Body::HandedToDepartment => set(&[M::HandedToDepartment]),
            Body::DepartmentStarted => set(&[M::DepartmentStarted]),
            Body::WaitingOnCustomer => set(&[M::WaitingOnCustomer]),
            Body::Resolved => set(&[M::Resolved]),
            Body::Feedback { satisfied } => match satisfied {
                Some(true) => set(&[M::FeedbackSatisfied]),
                Some(false) => set(&[M::FeedbackUnsatisfied]),
                None => MatcherSet::EMPTY,
            },
            Body::Reopened => set(&[M::Reopened]),
            Body::FollowUpDone => set(&[M::FollowUpDone]),
            Body::Closed => set(&[M::Closed]),
            Body::OnHold => set(&[M::OnHold]),
            Body::Resumed => set(&[M::Resumed]),
        }
    }
}

/// Ticket phases (docs/sla-semantics.md §1).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum Phase {
    #[default]
    Open = 0,
    Waiting,
    OnHold,
    Resolved,
    Closed,
    /// Not a phase of the policy language: the tombstone of a ticket dropped by `idle_ttl`
    /// or past `closed_retention` (rule 9); its later events are dead-lettered as
    /// `ticket_expired`. Last, so older snapshots decode unchanged.
    Expired,
}

impl Phase {
    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "open" => Phase::Open,
            "waiting" => Phase::Waiting,
            "on_hold" => Phase::OnHold,
            "resolved" => Phase::Resolved,
            "closed" => Phase::Closed,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Open => "open",
            Phase::Waiting => "waiting",
            Phase::OnHold => "on_hold",
            Phase::Resolved => "resolved",
            Phase::Closed => "closed",
            Phase::Expired => "expired",
        }
    }
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Phases a clock may start in, one bit per `Phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhaseSet(pub u8);

impl PhaseSet {
    /// `open`, `waiting`, `on_hold`.
    pub const DEFAULT: PhaseSet = PhaseSet(0b111);
    pub const EMPTY: PhaseSet = PhaseSet(0);
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn of(ps: &[Phase]) -> PhaseSet {
        PhaseSet(ps.iter().fold(0, |acc, p| acc | p.bit()))
    }
    pub fn contains(self, p: Phase) -> bool {
        self.0 & p.bit() != 0
    }
}

/// The latency distributions a clock may feed with `metric` (docs/sla-semantics.md §2 rule 12).
/// A closed set: each is a histogram of the metric catalogue, whose names and label sets
/// stay bounded whatever the policy file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LatencyMetric {
    FirstResponse,
    NextResponse,
    Resolution,
}

/// Every [`LatencyMetric`] with its name in the policy language.
pub const LATENCY_METRICS: &[(LatencyMetric, &str)] = &[
    (LatencyMetric::FirstResponse, "first_response"),
    (LatencyMetric::NextResponse, "next_response"),
    (LatencyMetric::Resolution, "resolution"),
];

impl LatencyMetric {
    pub fn parse(s: &str) -> Option<LatencyMetric> {
        LATENCY_METRICS
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(m, _)| *m)
    }
    pub fn as_str(self) -> &'static str {
        LATENCY_METRICS[self as usize].1
    }
}

/// A list-or-any selector field: `None` matches anything.
pub type AnyOf<T> = Option<Vec<T>>;

fn any_of<T: PartialEq>(set: &AnyOf<T>, value: &T) -> bool {
    set.as_ref().is_none_or(|vs| vs.contains(value))
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    pub channel: AnyOf<Channel>,
    pub category: AnyOf<Category>,
    pub urgency: AnyOf<Urgency>,
    pub tier: AnyOf<Tier>,
    pub tenant: AnyOf<String>,
    pub team: AnyOf<String>,
}

impl Selector {
    /// Unspecified urgency and tier match as `general` and `standard`.
    pub fn matches(&self, t: &TicketAttrs) -> bool {
        any_of(&self.channel, &t.channel)
            && any_of(&self.category, &t.category)
            && any_of(&self.urgency, &t.urgency.effective())
            && any_of(&self.tier, &t.tier.effective())
            && self
                .tenant
                .as_ref()
                .is_none_or(|vs| vs.iter().any(|v| v == t.tenant.as_str()))
            && self
                .team
                .as_ref()
                .is_none_or(|vs| vs.iter().any(|v| v == t.team.as_str()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnReopen {
    Restart,
    #[default]
    Keep,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EscalationStep {
    /// Counted time past the deadline (0 = at the breach), already resolved from `Nx` forms.
    pub after: Dur,
    pub notify: Arc<[Role]>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClockKind {
    /// A deadline `target` after the start: warnings, breach, escalation ladder.
    Deadline,
    /// Due every `every`; a stop-matcher event resets the period; ends on `end`.
    Recurring { every: Dur, end: MatcherSet },
}

/// One clock of a policy or overlay.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockSpec {
    pub id: Arc<str>,
    pub rule: Arc<str>,
    pub start: MatcherSet,
    pub once: bool,
    /// Index (within the same resolved clock list) of the clock this one waits for.
    pub after: Option<Arc<str>>,
    pub phases: PhaseSet,
    pub stop: MatcherSet,
    pub pause: MatcherSet,
    pub resume: MatcherSet,
    /// Ticket phases during which the clock is paused (`paused_in`; empty = none): it pauses
    /// when the phase enters one of them and resumes when the phase leaves them, so only the
    /// event that really ends a hold (`resumed`) resumes it.
    pub paused_in: PhaseSet,
    /// The latency histogram its stops feed (`metric`; rule 12), one of [`LATENCY_METRICS`].
    pub metric: Option<LatencyMetric>,
    /// For recurring clocks equal to `every`.
    pub target: Dur,
    pub calendar: CalendarId,
    /// Ascending fractions in (0, 1).
    pub warn_at: Vec<f64>,
    pub kind: ClockKind,
    pub escalate: Vec<EscalationStep>,
    pub on_reopen: OnReopen,
    pub survives_close: bool,
    /// A follow-up clock: emits FollowUpDue when it starts; a reopen cancels it.
    pub follow_up: bool,
    /// Position of the clock in the policy file (rule 3 ordering).
    pub position: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionSpec {
    pub on: MatcherSet,
    pub level: u32,
    pub notify: Arc<[Role]>,
    pub reason: Arc<str>,
    pub rule: Arc<str>,
    pub clock: Arc<str>,
    pub position: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub id: Arc<str>,
    pub selector: Selector,
    pub clocks: Vec<ClockSpec>,
    pub actions: Vec<ActionSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Overlay {
    pub id: Arc<str>,
    pub selector: Selector,
    pub clocks: Vec<ClockSpec>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub id: Arc<str>,
    pub rule: Arc<str>,
    pub on: MatcherSet,
    pub since: MatcherSet,
    pub target: Dur,
    pub position: u32,
}

/// Index into `PolicySet::calendars`; 0 is always `24x7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CalendarId(pub u16);

/// Surge detection thresholds (docs/sla-semantics.md §2 rule 10); the defaults are the contract's.
#[derive(Clone, Debug, PartialEq)]
pub struct SurgeSpec {
    pub enabled: bool,
    pub window: Dur,
    pub baseline: Dur,
    pub start_ratio: f64,
    pub end_ratio: f64,
    pub min_tickets: u32,
    pub baseline_floor_per_min: f64,
}

impl Default for SurgeSpec {
    fn default() -> Self {
        SurgeSpec {
            enabled: true,
            window: Dur::from_secs(300),
            baseline: Dur::from_secs(3600),
            start_ratio: 3.0,
            end_ratio: 1.5,
            min_tickets: 20,
            baseline_floor_per_min: 1.0,
        }
    }
}

/// A whole compiled policy file.
#[derive(Clone, Debug)]
pub struct PolicySet {
    pub calendars: Vec<Calendar>,
    pub policies: Vec<Policy>,
    pub overlays: Vec<Overlay>,
    pub checks: Vec<Check>,
    pub surge: SurgeSpec,
    /// Hash of the source text: recorded in ticket state, logged on reload.
    pub version: u64,
}

impl PolicySet {
    /// First policy whose selector matches (file order), or `None`.
    pub fn match_policy(&self, attrs: &TicketAttrs) -> Option<usize> {
        self.policies.iter().position(|p| p.selector.matches(attrs))
    }
    pub fn calendar(&self, id: CalendarId) -> &Calendar {
        &self.calendars[id.0 as usize]
    }
}
