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

#[cfg(test)]
mod tests {
    use super::*;

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
