//! One SLA event (proto3 JSON) as one human-readable line: the demo's live feed and
//! `slawatch tail`.

/// The SLA event's kind: the name of its body field (`breach`, `cleared`, …), or `?`.
pub fn kind_of(v: &serde_json::Value) -> &'static str {
    [
        "warning",
        "breach",
        "cleared",
        "escalation",
        "progressReminder",
        "followUpDue",
        "surgeStarted",
        "surgeEnded",
    ]
    .into_iter()
    .find(|k| v.get(*k).is_some())
    .unwrap_or("?")
}

/// The line for an event of `kind`; the time is `firedAt`'s time of day (UTC).
pub fn line(kind: &str, v: &serde_json::Value) -> String {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let at = s("firedAt");
    let at = at.get(11..19).unwrap_or(&at).to_string();
    let ticket = s("ticketId");
    let (rule, clock, policy) = (s("ruleId"), s("clock"), s("policyId"));
    match kind {
        "breach" => format!("{at}  BREACH      {ticket:<8} {rule:<4} {clock:<18} policy {policy}"),
        "cleared" => format!("{at}  cleared     {ticket:<8} {rule:<4} {clock}"),
        "warning" => {
            let f = v["warning"]
                .get("fraction")
                .and_then(|x| x.as_f64())
                .unwrap_or(0.0);
            format!(
                "{at}  warning     {ticket:<8} {rule:<4} {clock:<18} {:.0}% of target",
                f * 100.0
            )
        }
        "escalation" => {
            let e = &v["escalation"];
            let level = e.get("level").and_then(|x| x.as_u64()).unwrap_or(0);
            let notify: Vec<String> = e
                .get("notify")
                .and_then(|x| x.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str())
                        .map(|r| r.trim_start_matches("ROLE_").to_lowercase())
                        .collect()
                })
                .unwrap_or_default();
            let reason = e.get("reason").and_then(|x| x.as_str()).unwrap_or("");
            format!(
                "{at}  ESCALATION  {ticket:<8} {rule:<4} {clock:<18} L{level} → {} ({reason})",
                notify.join(", ")
            )
        }
        "progressReminder" => {
            let nth = v["progressReminder"]
                .get("nth")
                .and_then(|x| x.as_u64())
                .unwrap_or(0);
            format!("{at}  reminder    {ticket:<8} {rule:<4} {clock:<18} #{nth} no progress update")
        }
        "followUpDue" => format!("{at}  follow-up   {ticket:<8} {rule:<4} visit due"),
        "surgeStarted" | "surgeEnded" => {
            let body = &v[kind];
            // `CHANNEL_CHAT` → `chat`, as every other line names it.
            let dim = body
                .get("channel")
                .and_then(|x| x.as_str())
                .map(|c| c.trim_start_matches("CHANNEL_"))
                .or_else(|| {
                    body.get("category")
                        .and_then(|x| x.as_str())
                        .map(|c| c.trim_start_matches("CATEGORY_"))
                })
                .unwrap_or("")
                .to_lowercase();
            let obs = body
                .get("observedPerMin")
                .and_then(|x| x.as_f64())
                .unwrap_or(0.0);
            let base = body
                .get("baselinePerMin")
                .and_then(|x| x.as_f64())
                .unwrap_or(0.0);
            format!(
                "{at}  *** {} tenant {} {dim}: {obs:.1}/min vs baseline {base:.1}/min ***",
                if kind == "surgeStarted" {
                    "SURGE STARTED"
                } else {
                    "surge ended"
                },
                s("tenant")
            )
        }
        _ => format!("{at}  {kind} {ticket}"),
    }
}

/// One window of the demo's feed: what to print, in fired-time order, and what to count.
#[derive(Debug, Default, PartialEq)]
pub struct Window {
    /// The lines to print, ordered by `firedAt` (then by the order they arrived).
    pub lines: Vec<String>,
    /// Events left out, by plural label ("breaches", "cleared", …), for "… and N more".
    pub hidden: std::collections::BTreeMap<&'static str, u64>,
}

/// Arranges the events received during one window: the output topics' partitions are read
/// side by side, so arrival order is not fired order. Surges are always shown; of the
/// rest, the `max` earliest by fired time.
pub fn arrange(events: &[serde_json::Value], max: usize) -> Window {
    let fired = |v: &serde_json::Value| {
        v.get("firedAt")
            .and_then(|x| x.as_str())
            .and_then(|t| crate::core::time::Ts::parse_rfc3339(t).ok())
    };
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (fired(&events[i]), i));
    let mut shown = Vec::new();
    let mut w = Window::default();
    let mut others = 0usize;
    for i in order {
        let v = &events[i];
        let kind = kind_of(v);
        if !kind.starts_with("surge") {
            if others >= max {
                *w.hidden.entry(plural(kind)).or_default() += 1;
                continue;
            }
            others += 1;
        }
        shown.push(line(kind, v));
    }
    w.lines = shown;
    w
}

/// "… and 2 breaches, 1 cleared more", or `None` when nothing was left out.
pub fn hidden_line(hidden: &std::collections::BTreeMap<&'static str, u64>) -> Option<String> {
    if hidden.is_empty() {
        return None;
    }
    let parts: Vec<String> = hidden.iter().map(|(k, v)| format!("{v} {k}")).collect();
    Some(format!("      … and {} more", parts.join(", ")))
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "breach" => "breaches",
        "escalation" => "escalations",
        "progressReminder" => "reminders",
        "followUpDue" => "follow-ups",
        "cleared" => "cleared",
        "warning" => "warnings",
        _ => "others",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, ticket: &str, at: &str) -> serde_json::Value {
        serde_json::from_str(&format!(
            r#"{{"ticketId":"{ticket}","ruleId":"R1","clock":"first_response","policyId":"chat","tenant":"t",
                "firedAt":"{at}","{kind}":{{}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_window_prints_in_fired_time_order_whatever_the_arrival_order() {
        // Two partitions' records interleaved: 01:01:59 arrives before 01:01:38; a
        // fractional second sorts by time, not as text ("38.5Z" > "38Z").
        let events = vec![
            ev("breach", "T11", "2026-12-06T01:01:59Z"),
            ev("escalation", "T5", "2026-12-06T01:01:38.500Z"),
            ev("breach", "T5", "2026-12-06T01:01:38Z"),
            ev("cleared", "T5", "2026-12-06T01:01:47Z"),
        ];
        let w = arrange(&events, 10);
        let times: Vec<&str> = w.lines.iter().map(|l| &l[..8]).collect();
        assert_eq!(times, ["01:01:38", "01:01:38", "01:01:47", "01:01:59"]);
        assert!(
            w.lines[0].contains("BREACH") && w.lines[1].contains("ESCALATION"),
            "{:?}",
            w.lines
        );
        assert!(w.hidden.is_empty());
        assert_eq!(hidden_line(&w.hidden), None);
    }

    #[test]
    fn a_window_shows_the_earliest_and_counts_the_rest_but_always_shows_surges() {
        let mut events: Vec<serde_json::Value> = (0..5)
            .rev()
            .map(|i| {
                ev(
                    "breach",
                    &format!("T{i}"),
                    &format!("2026-12-06T01:0{i}:00Z"),
                )
            })
            .collect();
        events.push(ev("cleared", "T9", "2026-12-06T01:09:00Z"));
        events.push(ev("surgeStarted", "", "2026-12-06T01:08:00Z"));
        let w = arrange(&events, 2);
        assert_eq!(w.lines.len(), 3, "{:?}", w.lines);
        assert!(w.lines[0].starts_with("01:00:00") && w.lines[1].starts_with("01:01:00"));
        assert!(w.lines[2].contains("SURGE STARTED"));
        assert_eq!(
            hidden_line(&w.hidden).unwrap(),
            "      … and 3 breaches, 1 cleared more"
        );
    }

    #[test]
    fn surge_lines_name_the_channel_as_other_lines_do() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"tenant":"globex","firedAt":"2024-03-04T11:10:00Z",
                "surgeStarted":{"channel":"CHANNEL_CHAT","observedPerMin":9.0,"baselinePerMin":2.0}}"#,
        )
        .unwrap();
        assert_eq!(
            line(kind_of(&v), &v),
            "11:10:00  *** SURGE STARTED tenant globex chat: 9.0/min vs baseline 2.0/min ***"
        );
    }

    #[test]
    fn a_breach_line_has_time_ticket_rule_clock_and_policy() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"ticketId":"CHAT-1001","policyId":"chat","ruleId":"R1","clock":"first_response",
                "firedAt":"2024-03-04T10:01:00Z","breach":{}}"#,
        )
        .unwrap();
        assert_eq!(kind_of(&v), "breach");
        assert_eq!(
            line("breach", &v),
            "10:01:00  BREACH      CHAT-1001 R1   first_response     policy chat"
        );
    }
}
