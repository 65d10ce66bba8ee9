//! The order in which events apply (docs/sla-semantics.md rule 4): (occurred_at, causal rank,
//! event_id). The causal rank makes exports with second-granularity timestamps read as
//! they happened: a ticket opens before anything else at its instant, a customer message
//! before its answer, a close after everything. Live processing and `replay` both sort by
//! [`order_key`], so they agree on ties.
use crate::core::model::{Body, Event};
use crate::core::time::Ts;

/// Rank of an event among events of the same instant; lower applies first.
pub fn causal_rank(body: &Body) -> u8 {
    match body {
        Body::Opened { .. } => 0,
        Body::Reopened | Body::Feedback { .. } => 1,
        Body::CustomerMessage => 2,
        Body::UrgencyChanged(_)
        | Body::Assigned
        | Body::Transferred { .. }
        | Body::DepartmentRequested
        | Body::HandedToDepartment
        | Body::DepartmentStarted
        | Body::Escalated(_) => 3,
        Body::AutoReply => 4,
        Body::AgentMessage { .. } | Body::EscalationAnswered(_) => 5,
        Body::WaitingOnCustomer | Body::OnHold | Body::Resumed => 6,
        Body::Resolved => 7,
        Body::FollowUpDone => 8,
        Body::Closed => 9,
    }
}

/// The total order of rule 4 (ties beyond it are broken by the caller, e.g. by arrival).
pub fn order_key(event: &Event) -> (Ts, u8, &str) {
    (
        event.occurred_at,
        causal_rank(&event.body),
        event.event_id.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Audience, ReplyKind};

    #[test]
    fn rule4_causal_ranks_follow_the_contract() {
        let opened = Body::Opened {
            channel: Default::default(),
            category: Default::default(),
            urgency: Default::default(),
            tier: Default::default(),
            team: Default::default(),
        };
        let reply = Body::AgentMessage {
            kind: ReplyKind::Answer,
            audience: Audience::Customer,
        };
        let chain = [
            opened,
            Body::Reopened,
            Body::CustomerMessage,
            Body::Assigned,
            Body::AutoReply,
            reply,
            Body::OnHold,
            Body::Resolved,
            Body::FollowUpDone,
            Body::Closed,
        ];
        let ranks: Vec<u8> = chain.iter().map(causal_rank).collect();
        assert_eq!(ranks, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
