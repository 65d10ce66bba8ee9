//! The admin API's read-only view of one ticket's live clocks (`GET /tickets/{id}`).
use crate::codec::rfc3339_z;
use crate::core::clock::ClockStatus;
use crate::core::engine::Engine;
use crate::core::policy::ClockKind;
use crate::core::time::Ts;
use serde_json::{json, Value};

fn ts(t: Ts) -> Value {
    if t == Ts::MIN || t == Ts::MAX {
        Value::Null
    } else {
        Value::String(rfc3339_z(t))
    }
}

fn status(s: ClockStatus) -> &'static str {
    match s {
        ClockStatus::Idle => "idle",
        ClockStatus::Running => "running",
        ClockStatus::Stopped => "stopped",
        ClockStatus::Cancelled => "cancelled",
    }
}

/// The view of `tenant`'s ticket `ticket_id` in `engine`, if it holds it.
pub fn ticket_view(
    engine: &Engine,
    topic: &str,
    partition: i32,
    tenant: &str,
    ticket_id: &str,
) -> Option<Value> {
    let t = engine.ticket(tenant, ticket_id)?;
    let plan = engine.plan_of(t);
    let clocks: Vec<Value> = t
        .clock_states()
        .enumerate()
        .filter_map(|(i, c)| {
            let spec = plan.clocks.get(i)?;
            let cal = plan.calendar(i);
            let running = c.is_running();
            let (kind, every) = match &spec.kind {
                ClockKind::Deadline => ("deadline", None),
                ClockKind::Recurring { every, .. } => ("recurring", Some(every.to_string())),
            };
            Some(json!({
                "id": &*spec.id,
                "rule": &*spec.rule,
                "kind": kind,
                "every": every,
                "status": status(c.status),
                "start": if c.status == ClockStatus::Idle { Value::Null } else { ts(c.start) },
                "target": spec.target.to_string(),
                "deadline": if running { c.deadline(spec, cal).map(ts).unwrap_or(Value::Null) } else { Value::Null },
                "next_due": if running { c.next_due(spec, cal).map(ts).unwrap_or(Value::Null) } else { Value::Null },
                "paused": c.is_paused(),
                "breached": c.breached,
                "escalation_level": c.escalated,
                "reminders": c.nth,
            }))
        })
        .collect();
    Some(json!({
        "ticket_id": t.id.as_str(),
        "input_topic": topic,
        "partition": partition,
        "tenant": engine.tenant_of(t).as_str(),
        "channel": t.attrs.channel.as_str(),
        "category": t.attrs.category.as_str(),
        "urgency": t.attrs.urgency.effective().as_str(),
        "tier": t.attrs.tier.effective().as_str(),
        "policy": &*plan.policy_id,
        "overlays": plan.overlay_ids.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        "policy_version": format!("{:016x}", plan.set.version),
        "phase": t.phase.as_str(),
        "opened_at": ts(t.opened_at),
        "last_event": ts(t.last_event()),
        "closed_at": t.closed_at().map(ts).unwrap_or(Value::Null),
        "partition_watermark": ts(engine.watermark()),
        "clocks": clocks,
        // Also served alone at /tickets/{tenant}/{id}/timeline.
        "timeline": serde_json::to_value(crate::explain::live_trail(
            t,
            engine.tenant_of(t),
            plan,
            engine.watermark().max(t.last_event()),
        ))
        .unwrap_or(Value::Null),
    }))
}
