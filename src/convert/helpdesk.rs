//! The help-desk log of an Italian software company (4TU "Helpdesk", `finale.csv`): one row
//! per completed activity, `Complete Timestamp` the row's time (`YYYY/MM/DD hh:mm:ss.sss`,
//! read as UTC). Rows of a case are ordered by (time, line): the file's order.
//!
//! | event | from |
//! |---|---|
//! | `opened` | the case's first row (usually `Assign seriousness` or `Insert ticket`); channel `web` (the log has no channel; tickets are entered in the help-desk application); urgency from that row's `seriousness_2` |
//! | `urgency_changed` | `seriousness_2` maps to another urgency on a later row |
//! | `assigned`, `agent_reply` (answer) | the first `Take in charge ticket`: the owner's first response (proxy; the log has no messages) |
//! | `transferred` | a `Take in charge ticket` by another `Resource` than the current owner |
//! | `waiting_on_customer` | `Wait` |
//! | `resumed` | the next activity after `Wait` other than `Wait`, a resolution or `Closed` (the log has no explicit resume) |
//! | `escalated` (team lead) | `Require upgrade`: the ticket moves up a support level, the first rung of the ladder |
//! | `handed_to_department` | `Create SW anomaly` (to development), `Schedule intervention` (to field service) |
//! | `agent_reply` (solution) | `Resolve SW anomaly`: the department's solution |
//! | `agent_reply` (solution), `resolved` | `Resolve ticket`, `RESOLVED`, `VERIFIED`, `INVALID`, `DUPLICATE`, when not resolved yet |
//! | `reopened` | `Take in charge ticket` on a resolved or closed ticket |
//! | `closed` | the first `Closed` of a cycle; later rows of a closed case are ignored unless they reopen it |
//!
//! **Urgency.** The levels of `service_level` and `seriousness_2` are anonymised ("Value
//! 1".."Value 4") and their meaning is not published. Measured from each case's first row
//! (24×7 hours, medians): `seriousness_2` Value 4 (203 resolved cases) is taken in charge at
//! once (0.0 h) and resolved in 3.9 h, against 17–19 h and 139–192 h for Values 1 and 2;
//! `service_level` shows no such order (take in charge 7.3 / 17.2 / 5.1 / 77.5 h for Values
//! 1–4). So urgency follows `seriousness_2`, read as ascending severity: Value 4 → urgent,
//! Value 3 → important (24 cases; its rank is an assumption), Values 1 and 2 → general;
//! `service_level` is not used.
use super::{
    convert_log, small_uint, utc, CaseEvents, CaseInfo, Conversion, ConvertError, ConvertOptions,
    ConvertStats, Header, Source,
};
use crate::core::model::{
    Audience, Body, Category, Channel, Event, ReplyKind, Role, Tier, Urgency,
};
use crate::core::time::Ts;
use compact_str::CompactString;
use std::io::Read;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    InsertTicket,
    AssignSeriousness,
    TakeInCharge,
    Wait,
    RequireUpgrade,
    CreateSwAnomaly,
    ResolveSwAnomaly,
    ScheduleIntervention,
    /// Resolve ticket, RESOLVED, VERIFIED, INVALID, DUPLICATE.
    Resolve,
    Closed,
}

impl Activity {
    fn parse(s: &str) -> Option<Activity> {
        Some(match s {
            "Insert ticket" => Activity::InsertTicket,
            "Assign seriousness" => Activity::AssignSeriousness,
            "Take in charge ticket" => Activity::TakeInCharge,
            "Wait" => Activity::Wait,
            "Require upgrade" => Activity::RequireUpgrade,
            "Create SW anomaly" => Activity::CreateSwAnomaly,
            "Resolve SW anomaly" => Activity::ResolveSwAnomaly,
            "Schedule intervention" => Activity::ScheduleIntervention,
            "Resolve ticket" | "RESOLVED" | "VERIFIED" | "INVALID" | "DUPLICATE" => {
                Activity::Resolve
            }
            "Closed" => Activity::Closed,
            _ => return None,
        })
    }
}

/// `seriousness_2` → urgency (see the module docs).
pub fn urgency_of_seriousness(s: &str) -> Option<Urgency> {
    Some(match s {
        "Value 4" => Urgency::Urgent,
        "Value 3" => Urgency::Important,
        "Value 1" | "Value 2" => Urgency::General,
        _ => return None,
    })
}

/// `YYYY/MM/DD hh:mm:ss[.sss]`, read as UTC.
pub fn parse_time(s: &str) -> Option<Ts> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('/');
    let (year, month, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() {
        return None;
    }
    let (time, frac) = match time.split_once('.') {
        Some((t, f)) if (1..=3).contains(&f.len()) => {
            (t, small_uint(f)? * 10u32.pow(3 - f.len() as u32))
        }
        Some(_) => return None,
        None => (time, 0),
    };
    let mut t = time.split(':');
    let (h, m, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some() {
        return None;
    }
    utc(
        small_uint(year)? as i32,
        small_uint(month)?,
        small_uint(day)?,
        small_uint(h)?,
        small_uint(m)?,
        small_uint(sec)?,
        frac,
    )
}

struct Row {
    line: u64,
    activity: Activity,
    resource: CompactString,
    at: Ts,
    urgency: Urgency,
}

struct Columns {
    count: usize,
    case: usize,
    activity: usize,
    resource: usize,
    timestamp: usize,
    seriousness_2: usize,
}

impl Columns {
    fn of(h: &Header) -> Result<Columns, ConvertError> {
        Ok(Columns {
            count: h.len(),
            case: h.col("Case ID")?,
            activity: h.col("Activity")?,
            resource: h.col("Resource")?,
            timestamp: h.col("Complete Timestamp")?,
            seriousness_2: h.col("seriousness_2")?,
        })
    }

    fn parse(&self, line: u64, f: &[String]) -> Result<(CompactString, Row), String> {
        if f.len() != self.count {
            return Err(format!("{} fields, the header has {}", f.len(), self.count));
        }
        let case = f[self.case].trim();
        if case.is_empty() {
            return Err("empty Case ID".into());
        }
        let row = Row {
            line,
            activity: Activity::parse(f[self.activity].trim())
                .ok_or_else(|| format!("Activity: unknown {:?}", f[self.activity]))?,
            resource: CompactString::from(f[self.resource].trim()),
            at: parse_time(&f[self.timestamp]).ok_or_else(|| {
                format!(
                    "Complete Timestamp: not a YYYY/MM/DD hh:mm:ss.sss time: {:?}",
                    f[self.timestamp]
                )
            })?,
            urgency: urgency_of_seriousness(f[self.seriousness_2].trim())
                .ok_or_else(|| format!("seriousness_2: unknown {:?}", f[self.seriousness_2]))?,
        };
        Ok((CompactString::from(case), row))
    }
}

/// Converts the help-desk log (plain CSV).
pub fn convert(input: impl Read, opts: &ConvertOptions) -> Result<Conversion, ConvertError> {
    convert_log(
        input,
        opts,
        Source::Helpdesk,
        Columns::of,
        |cols, line, f| cols.parse(line, f),
        &convert_case,
    )
}

fn convert_case(
    case: &str,
    rows: &mut [Row],
    tenant: &str,
    opts: &ConvertOptions,
    stats: &mut ConvertStats,
) -> (CaseInfo, Vec<Event>) {
    rows.sort_by_key(|r| (r.at, r.line));
    let first = &rows[0];
    let mut c = CaseEvents::open(
        case,
        tenant,
        first.at,
        Body::Opened {
            channel: Channel::Web,
            category: Category::Technical,
            urgency: first.urgency,
            tier: Tier::Standard,
            team: CompactString::default(),
        },
    );
    let mut urgency = first.urgency;
    let mut owner: Option<&CompactString> = None;
    let (mut replied, mut waiting, mut resolved, mut closed) = (false, false, false, false);
    let solution = Body::AgentMessage {
        kind: ReplyKind::Solution,
        audience: Audience::Customer,
    };

    for (i, row) in rows.iter().enumerate() {
        if c.row(i as u32 + 1, row.at) {
            stats.clamped_rows += 1;
        }
        let act = row.activity;
        if resolved || closed {
            if act == Activity::TakeInCharge {
                c.push(Body::Reopened);
                resolved = false;
                closed = false;
                waiting = false;
            } else if closed {
                continue;
            }
        }
        if row.urgency != urgency {
            c.push(Body::UrgencyChanged(row.urgency));
            urgency = row.urgency;
        }
        if waiting && act != Activity::Wait {
            if !matches!(act, Activity::Resolve | Activity::Closed) {
                c.push(Body::Resumed);
            }
            waiting = false;
        }
        match act {
            Activity::InsertTicket | Activity::AssignSeriousness => {}
            Activity::TakeInCharge => {
                match owner {
                    None => c.push(Body::Assigned),
                    Some(o) if *o != row.resource => c.push(Body::Transferred { misrouted: false }),
                    Some(_) => {}
                }
                owner = Some(&row.resource);
                if !replied {
                    c.push(Body::AgentMessage {
                        kind: ReplyKind::Answer,
                        audience: Audience::Customer,
                    });
                    replied = true;
                }
            }
            Activity::Wait => {
                if !waiting && !resolved {
                    c.push(Body::WaitingOnCustomer);
                    waiting = true;
                }
            }
            Activity::RequireUpgrade => c.push(Body::Escalated(Role::TeamLead)),
            Activity::CreateSwAnomaly | Activity::ScheduleIntervention => {
                c.push(Body::HandedToDepartment)
            }
            Activity::ResolveSwAnomaly => {
                c.push(solution.clone());
                replied = true;
            }
            Activity::Resolve => {
                if !resolved {
                    c.push(solution.clone());
                    c.push(Body::Resolved);
                    resolved = true;
                    replied = true;
                }
            }
            Activity::Closed => {
                if !closed {
                    c.push(Body::Closed);
                    closed = true;
                }
            }
        }
    }
    c.finish(opts, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::kind_name;

    const HEADER: &str = "Case ID,Activity,Resource,Complete Timestamp,Variant,Variant index,Variant,seriousness,customer,product,responsible_section,seriousness_2,service_level,service_type,support_section,workgroup";

    fn row(case: &str, act: &str, res: &str, ts: &str, ser2: &str) -> String {
        format!("{case},{act},{res},{ts},Variant 12,12,Variant 12,Value 1,Value 1,Value 1,Value 1,{ser2},Value 2,Value 1,Value 1,Value 1")
    }

    fn run(rows: &[String]) -> Conversion {
        let text = format!("{HEADER}\n{}\n", rows.join("\n"));
        convert(text.as_bytes(), &ConvertOptions::default()).unwrap()
    }

    fn kinds(conv: &Conversion) -> Vec<String> {
        conv.events
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    &crate::codec::rfc3339_z(e.occurred_at)[5..19],
                    kind_name(&e.body)
                )
            })
            .collect()
    }

    #[test]
    fn readme_sample_case() {
        let conv = run(&[
            row(
                "Case 1",
                "Assign seriousness",
                "Value 1",
                "2012/10/09 14:50:17.000",
                "Value 1",
            ),
            row(
                "Case 1",
                "Take in charge ticket",
                "Value 1",
                "2012/10/09 14:51:01.000",
                "Value 1",
            ),
            row(
                "Case 1",
                "Take in charge ticket",
                "Value 2",
                "2012/10/12 15:02:56.000",
                "Value 1",
            ),
            row(
                "Case 1",
                "Resolve ticket",
                "Value 1",
                "2012/10/25 11:54:26.000",
                "Value 1",
            ),
            row(
                "Case 1",
                "Closed",
                "Value 3",
                "2012/11/09 12:54:39.000",
                "Value 1",
            ),
        ]);
        assert_eq!(
            kinds(&conv),
            [
                "10-09T14:50:17 opened",
                "10-09T14:51:01 assigned",
                "10-09T14:51:01 agent_reply",
                "10-12T15:02:56 transferred",
                "10-25T11:54:26 agent_reply",
                "10-25T11:54:26 resolved",
                "11-09T12:54:39 closed",
            ]
        );
        assert_eq!(conv.events[0].event_id, "Case 1-00000-00-opened");
        assert_eq!(conv.events[0].tenant, "helpdesk");
        match &conv.events[0].body {
            Body::Opened {
                channel, urgency, ..
            } => {
                assert_eq!(*channel, Channel::Web);
                assert_eq!(*urgency, Urgency::General);
            }
            b => panic!("{b:?}"),
        }
        assert_eq!(conv.cases[0].made_sla, None);
    }

    #[test]
    fn wait_resume_escalation_anomaly_reopen() {
        let conv = run(&[
            row(
                "Case 9",
                "Insert ticket",
                "Value 5",
                "2013/01/01 09:00:00.000",
                "Value 1",
            ),
            row(
                "Case 9",
                "Assign seriousness",
                "Value 5",
                "2013/01/01 09:00:00.000",
                "Value 4",
            ),
            row(
                "Case 9",
                "Take in charge ticket",
                "Value 5",
                "2013/01/01 09:10:00.000",
                "Value 4",
            ),
            row(
                "Case 9",
                "Wait",
                "Value 5",
                "2013/01/01 09:20:00.000",
                "Value 4",
            ),
            row(
                "Case 9",
                "Wait",
                "Value 5",
                "2013/01/01 09:25:00.000",
                "Value 4",
            ),
            row(
                "Case 9",
                "Require upgrade",
                "Value 5",
                "2013/01/01 10:00:00.000",
                "Value 4",
            ),
            row(
                "Case 9",
                "Create SW anomaly",
                "Value 6",
                "2013/01/01 11:00:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Resolve SW anomaly",
                "Value 6",
                "2013/01/01 12:00:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Wait",
                "Value 5",
                "2013/01/01 12:30:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Resolve ticket",
                "Value 5",
                "2013/01/01 13:00:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "RESOLVED",
                "Value 5",
                "2013/01/01 13:05:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Closed",
                "Value 3",
                "2013/01/02 13:00:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Take in charge ticket",
                "Value 7",
                "2013/01/03 13:00:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Resolve ticket",
                "Value 7",
                "2013/01/03 14:00:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Closed",
                "Value 3",
                "2013/01/04 14:00:00.000",
                "Value 3",
            ),
            row(
                "Case 9",
                "Closed",
                "Value 3",
                "2013/01/05 14:00:00.000",
                "Value 3",
            ),
        ]);
        assert_eq!(
            kinds(&conv),
            [
                "01-01T09:00:00 opened",
                "01-01T09:00:00 urgency_changed",
                "01-01T09:10:00 assigned",
                "01-01T09:10:00 agent_reply",
                "01-01T09:20:00 waiting_on_customer",
                // Rule 4 order at one instant: escalated (rank 3) before resumed (6).
                "01-01T10:00:00 escalated",
                "01-01T10:00:00 resumed",
                "01-01T11:00:00 urgency_changed",
                "01-01T11:00:00 handed_to_department",
                "01-01T12:00:00 agent_reply",
                "01-01T12:30:00 waiting_on_customer",
                "01-01T13:00:00 agent_reply",
                "01-01T13:00:00 resolved",
                "01-02T13:00:00 closed",
                "01-03T13:00:00 reopened",
                "01-03T13:00:00 transferred",
                "01-03T14:00:00 agent_reply",
                "01-03T14:00:00 resolved",
                "01-04T14:00:00 closed",
            ]
        );
        let urg: Vec<_> = conv
            .events
            .iter()
            .filter_map(|e| match e.body {
                Body::UrgencyChanged(u) => Some(u),
                _ => None,
            })
            .collect();
        assert_eq!(urg, [Urgency::Urgent, Urgency::Important]);
        assert!(conv
            .events
            .iter()
            .any(|e| e.body == Body::Escalated(Role::TeamLead)));
        // Same-second rows keep their file order through the ids.
        assert!(conv.events[0].event_id < conv.events[1].event_id);
        assert_eq!(conv.events[1].event_id, "Case 9-00002-00-urgency_changed");
    }

    #[test]
    fn malformed_rows_are_skipped_with_their_line() {
        let conv = run(&[
            row(
                "Case 1",
                "Assign seriousness",
                "Value 1",
                "2012/10/09 14:50:17.000",
                "Value 1",
            ),
            row(
                "Case 1",
                "Dance",
                "Value 1",
                "2012/10/09 14:51:01.000",
                "Value 1",
            ),
            row(
                "Case 1",
                "Closed",
                "Value 1",
                "2012/13/09 14:51:01.000",
                "Value 1",
            ),
            row(
                "Case 1",
                "Closed",
                "Value 1",
                "2012/10/09 14:51:01.000",
                "Value 9",
            ),
            row(
                "",
                "Closed",
                "Value 1",
                "2012/10/09 14:51:01.000",
                "Value 1",
            ),
        ]);
        assert_eq!(conv.stats.rows, 5);
        assert_eq!(conv.stats.skipped, 4);
        let errs: Vec<String> = conv.stats.errors.iter().map(|e| e.to_string()).collect();
        assert!(errs[0].starts_with("line 3: Activity"), "{errs:?}");
        assert!(
            errs[1].starts_with("line 4: Complete Timestamp"),
            "{errs:?}"
        );
        assert!(errs[2].starts_with("line 5: seriousness_2"), "{errs:?}");
        assert!(errs[3].starts_with("line 6: empty Case ID"), "{errs:?}");
        assert_eq!(conv.events.len(), 1);
    }

    #[test]
    fn resolve_to_close_gap_beyond_idle_ttl_drops_the_close() {
        let conv = run(&[
            row(
                "Case 2",
                "Assign seriousness",
                "Value 1",
                "2012/01/01 10:00:00.000",
                "Value 1",
            ),
            row(
                "Case 2",
                "Resolve ticket",
                "Value 1",
                "2012/01/02 10:00:00.000",
                "Value 1",
            ),
            row(
                "Case 2",
                "Closed",
                "Value 1",
                "2012/02/15 10:00:00.000",
                "Value 1",
            ),
        ]);
        assert_eq!(conv.events.last().unwrap().body, Body::Resolved);
        assert_eq!(conv.stats.truncated_cases, 1);
        assert_eq!(conv.stats.dropped_events, 1);
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2012/10/09 14:50:17.000").map(crate::codec::rfc3339_z),
            Some("2012-10-09T14:50:17Z".to_string())
        );
        assert_eq!(
            parse_time("2012/10/09 14:50:17.25").map(crate::codec::rfc3339_z),
            Some("2012-10-09T14:50:17.250Z".to_string())
        );
        assert_eq!(
            parse_time("2012/10/09 14:50:17").map(crate::codec::rfc3339_z),
            Some("2012-10-09T14:50:17Z".to_string())
        );
        for bad in [
            "",
            "2012/10/09",
            "2012/10/09 14:50",
            "2012/10/09 14:50:17.0000",
            "2012-10-09 14:50:17",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
