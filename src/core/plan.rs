//! A ticket's resolved clock list: its policy's clocks followed by those of every matching
//! overlay (an overlay clock whose id the policy already has is skipped: the policy's own
//! definition wins). Plans are shared by all tickets with the same match.
use crate::core::calendar::Calendar;
use crate::core::model::TicketAttrs;
use crate::core::policy::{ActionSpec, ClockSpec, Matcher, MatcherSet, PolicySet};
use smallvec::SmallVec;
use std::sync::Arc;

/// Start matchers of events most tickets never see (escalations and their answers,
/// department handoffs, transfers, internal notes, urgency changes): a clock started only
/// by these gets no room reserved in a new ticket's clock block ([`Plan::routine_starts`]).
/// Memory only: which clocks start, and when, is the same either way.
pub const RARE_STARTS: MatcherSet = MatcherSet::of(&[
    Matcher::InternalProgress,
    Matcher::Transferred,
    Matcher::TransferredMisrouted,
    Matcher::Escalated,
    Matcher::EscalatedAgent,
    Matcher::EscalatedTeamLead,
    Matcher::EscalatedSupervisor,
    Matcher::EscalatedDepartmentHead,
    Matcher::EscalationAnswered,
    Matcher::EscalationAnsweredAgent,
    Matcher::EscalationAnsweredTeamLead,
    Matcher::EscalationAnsweredSupervisor,
    Matcher::EscalationAnsweredDepartmentHead,
    Matcher::DepartmentRequested,
    Matcher::HandedToDepartment,
    Matcher::DepartmentStarted,
    Matcher::UrgencyChanged,
]);

/// Start matchers of the events that end a ticket's open life (resolution, closing): a
/// clock started only by these (a follow-up visit) gets no room reserved in a new ticket's
/// clock block either ([`Plan::routine_starts`]). The block grows when it starts, once in
/// the ticket's life, instead of carrying the clock's 16 bytes of room through the whole
/// open life (issue 14, bytes per open ticket: in the engine bench, a fifth of the open
/// tickets' blocks fell a size class, −8 B per open ticket). Memory only, as above.
pub const CLOSING_STARTS: MatcherSet = MatcherSet::of(&[Matcher::Resolved, Matcher::Closed]);

/// Indices of a plan's overlays in its policy set.
pub type OverlayIndices = SmallVec<[usize; 4]>;

#[derive(Debug)]
pub struct Plan {
    pub set: Arc<PolicySet>,
    /// Empty when no policy matched (the ticket then only runs checks).
    pub policy_id: Arc<str>,
    pub policy_index: Option<usize>,
    pub overlay_ids: Vec<Arc<str>>,
    pub clocks: Vec<ClockSpec>,
    /// `after` resolved to an index into `clocks`.
    pub after: Vec<Option<usize>>,
    pub actions: Vec<ActionSpec>,
    /// [`Plan::routine_starts`], counted once (every ticket opened reads it).
    routine_starts: usize,
}

/// Identifies a plan by names, so a snapshot can be restored under a reloaded policy file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PlanKey {
    pub policy_id: String,
    pub overlay_ids: Vec<String>,
}

impl Plan {
    pub fn for_attrs(set: &Arc<PolicySet>, attrs: &TicketAttrs) -> Plan {
        let (policy_index, overlays) = Plan::match_of(set, attrs);
        Plan::build(set, policy_index, &overlays)
    }

    /// What `attrs` match in `set`: the policy's index and the matching overlays' indices
    /// (no allocation for up to four overlays, so a registry can look a plan up by it
    /// before building one).
    pub fn match_of(set: &PolicySet, attrs: &TicketAttrs) -> (Option<usize>, OverlayIndices) {
        let policy_index = set.match_policy(attrs);
        let overlays = set
            .overlays
            .iter()
            .enumerate()
            .filter(|(_, o)| o.selector.matches(attrs))
            .map(|(i, _)| i)
            .collect();
        (policy_index, overlays)
    }

    pub fn build(set: &Arc<PolicySet>, policy_index: Option<usize>, overlays: &[usize]) -> Plan {
        let mut clocks: Vec<ClockSpec> = Vec::new();
        let mut actions = Vec::new();
        let mut policy_id: Arc<str> = "".into();
        if let Some(pi) = policy_index {
            let p = &set.policies[pi];
            policy_id = p.id.clone();
            clocks.extend(p.clocks.iter().cloned());
            actions.extend(p.actions.iter().cloned());
        }
        let mut overlay_ids = Vec::new();
        for &oi in overlays {
            let o = &set.overlays[oi];
            overlay_ids.push(o.id.clone());
            for c in &o.clocks {
                if !clocks.iter().any(|x| x.id == c.id) {
                    clocks.push(c.clone());
                }
            }
        }
        let after = clocks
            .iter()
            .map(|c| {
                c.after
                    .as_ref()
                    .and_then(|a| clocks.iter().position(|x| &x.id == a))
            })
            .collect();
        let routine_starts = clocks
            .iter()
            .filter(|c| c.start.0 & !(RARE_STARTS.0 | CLOSING_STARTS.0) != 0)
            .count();
        Plan {
            set: set.clone(),
            policy_id,
            policy_index,
            overlay_ids,
            clocks,
            after,
            actions,
            routine_starts,
        }
    }

    pub fn key(&self) -> PlanKey {
        PlanKey {
            policy_id: self.policy_id.to_string(),
            overlay_ids: self.overlay_ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Rebuilds a plan by names under `set`; unknown names are dropped.
    pub fn from_key(set: &Arc<PolicySet>, key: &PlanKey) -> Plan {
        let policy_index = set.policies.iter().position(|p| *p.id == *key.policy_id);
        let overlays: Vec<usize> = key
            .overlay_ids
            .iter()
            .filter_map(|id| set.overlays.iter().position(|o| *o.id == **id))
            .collect();
        Plan::build(set, policy_index, &overlays)
    }

    /// Clocks an ordinary ticket life may start while open: those with a start matcher
    /// other than the rare ones of [`RARE_STARTS`] and the closing ones of
    /// [`CLOSING_STARTS`]. A new ticket's clock block keeps room for them (`Clocks::open`),
    /// so a clock starting on a reply or a customer message does not reallocate; one
    /// started by an escalation, a department handoff or the resolution does.
    pub fn routine_starts(&self) -> usize {
        self.routine_starts
    }

    pub fn calendar(&self, clock: usize) -> &Calendar {
        self.set.calendar(self.clocks[clock].calendar)
    }

    pub fn same_match(&self, other: &Plan) -> bool {
        self.policy_index == other.policy_index
            && self.overlay_ids == other.overlay_ids
            && Arc::ptr_eq(&self.set, &other.set)
    }
}
