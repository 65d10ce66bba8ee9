//! The ServiceNow incident event log (UCI dataset 498): one row per update of an incident,
//! `sys_updated_at` the row's time (`d/m/yyyy HH:MM`, minute resolution, read as UTC).
//!
//! A case's rows are ordered by (`sys_updated_at`, `sys_mod_count`, line). That is the
//! `sys_mod_count` order except in 5 incidents whose counts repeat or run backwards
//! (INC0000130, …); there the time order is the one that reads as a history. Rows before
//! `opened_at` (INC0000130 and 4 others, up to 147 min early) are clamped to it.
//!
//! | event | from |
//! |---|---|
//! | `opened` | `opened_at`; channel from the first row's `contact_type` (Phone, IVR → phone; Email → email; Self service, Direct opening → web); urgency from its `priority`; team = its `assignment_group` |
//! | `urgency_changed` | `priority` maps to another urgency: 1 - Critical → urgent, 2 - High → important, 3 - Moderate / 4 - Low → general (a change between 3 and 4 is no event) |
//! | `transferred` | `assignment_group` changes (both known) or `reassignment_count` grows |
//! | `assigned` | `assigned_to` becomes known or changes without a transfer |
//! | `agent_reply` (answer) | first-response proxy: the first row whose state leaves `New` for Active / Awaiting * (the log has no messages) |
//! | `waiting_on_customer` | entering `Awaiting User Info` |
//! | `on_hold` | entering `Awaiting Vendor`, `Awaiting Problem` or `Awaiting Evidence` (moves between these three are no event) |
//! | `resumed` | leaving the pause for an open state (leaving it for Resolved / Closed needs none: resolving stops the clock, closing cancels it) |
//! | `agent_reply` (solution), `resolved` | entering `Resolved`: resolving sends the resolution to the caller, so it also is the first reply when the incident goes straight from New to Resolved |
//! | `reopened` | a resolved or closed incident whose `reopen_count` grows or whose state returns to an open state |
//! | `closed` | the first `Closed` of a cycle; later rows of a closed incident are ignored unless they reopen it |
//!
//! State `-100` (5 rows) leaves the state unchanged. `made_sla` of the last row is the
//! case's ground truth ([`super::CaseInfo::made_sla`]).
use super::{
    convert_log, small_uint, utc, CaseEvents, CaseInfo, Conversion, ConvertError, ConvertOptions,
    ConvertStats, Header, Source,
};
use crate::core::model::{Audience, Body, Category, Channel, Event, ReplyKind, Tier, Urgency};
use crate::core::time::Ts;
use compact_str::CompactString;
use std::io::Read;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    New,
    Active,
    AwaitingUser,
    /// Awaiting Vendor / Problem / Evidence.
    AwaitingOther,
    Resolved,
    Closed,
    /// `-100`: no state.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    Waiting,
    Hold,
}

impl State {
    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "New" => State::New,
            "Active" => State::Active,
            "Awaiting User Info" => State::AwaitingUser,
            "Awaiting Vendor" | "Awaiting Problem" | "Awaiting Evidence" => State::AwaitingOther,
            "Resolved" => State::Resolved,
            "Closed" => State::Closed,
            "-100" => State::Unknown,
            _ => return None,
        })
    }
    fn is_open(self) -> bool {
        matches!(
            self,
            State::New | State::Active | State::AwaitingUser | State::AwaitingOther
        )
    }
    fn pause(self) -> Option<Pause> {
        match self {
            State::AwaitingUser => Some(Pause::Waiting),
            State::AwaitingOther => Some(Pause::Hold),
            _ => None,
        }
    }
}

/// `priority` → urgency.
pub fn urgency_of_priority(s: &str) -> Option<Urgency> {
    Some(match s {
        "1 - Critical" => Urgency::Urgent,
        "2 - High" => Urgency::Important,
        "3 - Moderate" | "4 - Low" => Urgency::General,
        _ => return None,
    })
}

/// `contact_type` → channel.
pub fn channel_of_contact_type(s: &str) -> Option<Channel> {
    Some(match s {
        "Phone" | "IVR" => Channel::Phone,
        "Email" => Channel::Email,
        "Self service" | "Direct opening" => Channel::Web,
        _ => return None,
    })
}

/// `d/m/yyyy HH:MM` (day and month not zero-padded), read as UTC.
pub fn parse_time(s: &str) -> Option<Ts> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('/');
    let (day, month, year) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() {
        return None;
    }
    let (hour, min) = time.split_once(':')?;
    utc(
        small_uint(year)? as i32,
        small_uint(month)?,
        small_uint(day)?,
        small_uint(hour)?,
        small_uint(min)?,
        0,
        0,
    )
}

struct Row {
    line: u64,
    state: State,
    reassignment_count: u32,
    reopen_count: u32,
    sys_mod_count: u32,
    made_sla: bool,
    opened_at: Ts,
    updated_at: Ts,
    channel: Channel,
    urgency: Urgency,
    group: Option<CompactString>,
    assignee: Option<CompactString>,
}

struct Columns {
    count: usize,
    number: usize,
    state: usize,
    reassignment_count: usize,
    reopen_count: usize,
    sys_mod_count: usize,
    made_sla: usize,
    opened_at: usize,
    sys_updated_at: usize,
    contact_type: usize,
    priority: usize,
    assignment_group: usize,
    assigned_to: usize,
}

impl Columns {
    fn of(h: &Header) -> Result<Columns, ConvertError> {
        Ok(Columns {
            count: h.len(),
            number: h.col("number")?,
            state: h.col("incident_state")?,
            reassignment_count: h.col("reassignment_count")?,
            reopen_count: h.col("reopen_count")?,
            sys_mod_count: h.col("sys_mod_count")?,
            made_sla: h.col("made_sla")?,
            opened_at: h.col("opened_at")?,
            sys_updated_at: h.col("sys_updated_at")?,
            contact_type: h.col("contact_type")?,
            priority: h.col("priority")?,
            assignment_group: h.col("assignment_group")?,
            assigned_to: h.col("assigned_to")?,
        })
    }

    /// One row, or why it is malformed.
    fn parse(&self, line: u64, f: &[String]) -> Result<(CompactString, Row), String> {
        if f.len() != self.count {
            return Err(format!("{} fields, the header has {}", f.len(), self.count));
        }
        let number = f[self.number].trim();
        if number.is_empty() || number == "?" {
            return Err("empty number".into());
        }
        let uint = |col: usize, name: &str| {
            small_uint(f[col].trim()).ok_or_else(|| format!("{name}: not a count: {:?}", f[col]))
        };
        let time = |col: usize, name: &str| {
            parse_time(&f[col])
                .ok_or_else(|| format!("{name}: not a d/m/yyyy HH:MM time: {:?}", f[col]))
        };
        let known = |col: usize| {
            let v = f[col].trim();
            (!v.is_empty() && v != "?").then(|| CompactString::from(v))
        };
        let row = Row {
            line,
            state: State::parse(f[self.state].trim())
                .ok_or_else(|| format!("incident_state: unknown {:?}", f[self.state]))?,
            reassignment_count: uint(self.reassignment_count, "reassignment_count")?,
            reopen_count: uint(self.reopen_count, "reopen_count")?,
            sys_mod_count: uint(self.sys_mod_count, "sys_mod_count")?,
            made_sla: match f[self.made_sla].trim() {
                "true" => true,
                "false" => false,
                other => return Err(format!("made_sla: not a bool: {other:?}")),
            },
            opened_at: time(self.opened_at, "opened_at")?,
            updated_at: time(self.sys_updated_at, "sys_updated_at")?,
            channel: channel_of_contact_type(f[self.contact_type].trim())
                .ok_or_else(|| format!("contact_type: unknown {:?}", f[self.contact_type]))?,
            urgency: urgency_of_priority(f[self.priority].trim())
                .ok_or_else(|| format!("priority: unknown {:?}", f[self.priority]))?,
            group: known(self.assignment_group),
            assignee: known(self.assigned_to),
        };
        Ok((CompactString::from(number), row))
    }
}

/// Converts the UCI log (plain CSV).
pub fn convert(input: impl Read, opts: &ConvertOptions) -> Result<Conversion, ConvertError> {
    convert_log(
        input,
        opts,
        Source::Uci,
        Columns::of,
        |cols, line, f| cols.parse(line, f),
        &convert_case,
    )
}

fn convert_case(
    number: &str,
    rows: &mut [Row],
    tenant: &str,
    opts: &ConvertOptions,
    stats: &mut ConvertStats,
) -> (CaseInfo, Vec<Event>) {
    rows.sort_by_key(|r| (r.updated_at, r.sys_mod_count, r.line));
    let first = &rows[0];
    let mut c = CaseEvents::open(
        number,
        tenant,
        first.opened_at,
        Body::Opened {
            channel: first.channel,
            category: Category::Technical,
            urgency: first.urgency,
            tier: Tier::Standard,
            team: first.group.clone().unwrap_or_default(),
        },
    );
    let mut state = State::New;
    let mut urgency = first.urgency;
    let mut group = first.group.clone();
    let mut reassignments = first.reassignment_count;
    let mut reopens = first.reopen_count;
    let mut assignee: Option<CompactString> = None;
    let (mut replied, mut resolved, mut closed) = (false, false, false);
    let mut pause: Option<Pause> = None;

    for (i, row) in rows.iter().enumerate() {
        if c.row(i as u32 + 1, row.updated_at) {
            stats.clamped_rows += 1;
        }
        let new_state = if row.state == State::Unknown {
            stats.unknown_state_rows += 1;
            state
        } else {
            row.state
        };
        let reopened_count = row.reopen_count > reopens;
        reopens = reopens.max(row.reopen_count);
        if resolved || closed {
            if reopened_count || new_state.is_open() {
                c.push(Body::Reopened);
                resolved = false;
                closed = false;
                pause = None;
            } else if closed {
                continue;
            }
        }
        if row.urgency != urgency {
            c.push(Body::UrgencyChanged(row.urgency));
            urgency = row.urgency;
        }
        let group_changed = matches!((&group, &row.group), (Some(a), Some(b)) if a != b);
        if row.group.is_some() {
            group.clone_from(&row.group);
        }
        let transfer = group_changed || row.reassignment_count > reassignments;
        reassignments = reassignments.max(row.reassignment_count);
        if transfer {
            c.push(Body::Transferred { misrouted: false });
            if row.assignee.is_some() {
                assignee.clone_from(&row.assignee);
            }
        } else if row.assignee.is_some() && row.assignee != assignee {
            c.push(Body::Assigned);
            assignee.clone_from(&row.assignee);
        }
        if let Some(p) = pause {
            if new_state.pause() != Some(p) {
                if new_state.is_open() {
                    c.push(Body::Resumed);
                }
                pause = None;
            }
        }
        if !replied && new_state.is_open() && new_state != State::New {
            c.push(Body::AgentMessage {
                kind: ReplyKind::Answer,
                audience: Audience::Customer,
            });
            replied = true;
        }
        if pause.is_none() {
            match new_state.pause() {
                Some(Pause::Waiting) => c.push(Body::WaitingOnCustomer),
                Some(Pause::Hold) => c.push(Body::OnHold),
                None => {}
            }
            pause = new_state.pause();
        }
        if new_state == State::Resolved && !resolved {
            c.push(Body::AgentMessage {
                kind: ReplyKind::Solution,
                audience: Audience::Customer,
            });
            c.push(Body::Resolved);
            resolved = true;
            replied = true;
        }
        if new_state == State::Closed && !closed {
            c.push(Body::Closed);
            closed = true;
        }
        state = new_state;
    }
    let made_sla = rows.last().map(|r| r.made_sla);
    c.finish(opts, made_sla)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::kind_name;

    const HEADER: &str = "number,incident_state,active,reassignment_count,reopen_count,sys_mod_count,made_sla,caller_id,opened_by,opened_at,sys_created_by,sys_created_at,sys_updated_by,sys_updated_at,contact_type,location,category,subcategory,u_symptom,cmdb_ci,impact,urgency,priority,assignment_group,assigned_to,knowledge,u_priority_confirmation,notify,problem_id,rfc,vendor,caused_by,closed_code,resolved_by,resolved_at,closed_at";

    /// A row with the columns that matter, in file order; the rest are filler.
    #[allow(clippy::too_many_arguments)]
    fn row(
        number: &str,
        state: &str,
        reassign: u32,
        reopen: u32,
        modc: u32,
        made_sla: bool,
        opened: &str,
        updated: &str,
        contact: &str,
        priority: &str,
        group: &str,
        assignee: &str,
    ) -> String {
        format!(
            "{number},{state},true,{reassign},{reopen},{modc},{made_sla},Caller 1,Opened by 1,{opened},Created by 1,{opened},Updated by 1,{updated},{contact},Location 1,Category 1,Subcategory 1,Symptom 1,?,2 - Medium,2 - Medium,{priority},{group},{assignee},true,false,Do Not Notify,?,?,?,?,code 5,Resolved by 1,?,?"
        )
    }

    fn run(rows: &[String]) -> Conversion {
        let text = format!("{HEADER}\n{}\n", rows.join("\n"));
        convert(text.as_bytes(), &ConvertOptions::default()).unwrap()
    }

    fn kinds(conv: &Conversion, ticket: &str) -> Vec<(String, String)> {
        conv.events
            .iter()
            .filter(|e| e.ticket_id == ticket)
            .map(|e| {
                (
                    crate::codec::rfc3339_z(e.occurred_at),
                    kind_name(&e.body).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn readme_sample_incident() {
        let o = "29/2/2016 01:16";
        let conv = run(&[
            row(
                "INC0000045",
                "New",
                0,
                0,
                0,
                true,
                o,
                "29/2/2016 01:23",
                "Phone",
                "3 - Moderate",
                "Group 56",
                "?",
            ),
            row(
                "INC0000045",
                "Resolved",
                0,
                0,
                2,
                true,
                o,
                "29/2/2016 08:53",
                "Phone",
                "3 - Moderate",
                "Group 56",
                "?",
            ),
            row(
                "INC0000045",
                "Resolved",
                0,
                0,
                3,
                true,
                o,
                "29/2/2016 11:29",
                "Phone",
                "3 - Moderate",
                "Group 56",
                "?",
            ),
            row(
                "INC0000045",
                "Closed",
                0,
                0,
                4,
                true,
                o,
                "5/3/2016 12:00",
                "Phone",
                "3 - Moderate",
                "Group 56",
                "?",
            ),
        ]);
        assert_eq!(conv.stats.cases, 1);
        assert_eq!(conv.stats.rows, 4);
        let k = kinds(&conv, "INC0000045");
        let want = [
            ("2016-02-29T01:16:00Z", "opened"),
            ("2016-02-29T08:53:00Z", "agent_reply"),
            ("2016-02-29T08:53:00Z", "resolved"),
            ("2016-03-05T12:00:00Z", "closed"),
        ];
        assert_eq!(
            k,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
        let ids: Vec<_> = conv.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "INC0000045-00000-00-opened",
                "INC0000045-00002-00-agent_reply",
                "INC0000045-00002-01-resolved",
                "INC0000045-00004-00-closed"
            ]
        );
        match &conv.events[0].body {
            Body::Opened {
                channel,
                urgency,
                team,
                ..
            } => {
                assert_eq!(*channel, Channel::Phone);
                assert_eq!(*urgency, Urgency::General);
                assert_eq!(team, "Group 56");
            }
            b => panic!("{b:?}"),
        }
        assert_eq!(conv.cases[0].made_sla, Some(true));
    }

    #[test]
    fn pauses_transfers_urgency_and_reopen() {
        let o = "1/3/2016 10:00";
        let r = |state, reassign, reopen, modc, t, prio, group, assignee| {
            row(
                "INC1",
                state,
                reassign,
                reopen,
                modc,
                false,
                o,
                t,
                "Self service",
                prio,
                group,
                assignee,
            )
        };
        let conv = run(&[
            r(
                "New",
                0,
                0,
                0,
                "1/3/2016 10:00",
                "3 - Moderate",
                "Group 1",
                "?",
            ),
            r(
                "New",
                1,
                0,
                1,
                "1/3/2016 10:00",
                "3 - Moderate",
                "Group 2",
                "?",
            ),
            r(
                "Awaiting User Info",
                1,
                0,
                2,
                "1/3/2016 11:00",
                "1 - Critical",
                "Group 2",
                "Resolver 7",
            ),
            r(
                "Awaiting Vendor",
                1,
                0,
                3,
                "1/3/2016 12:00",
                "1 - Critical",
                "Group 2",
                "Resolver 7",
            ),
            r(
                "Awaiting Problem",
                1,
                0,
                4,
                "1/3/2016 12:30",
                "1 - Critical",
                "Group 2",
                "Resolver 7",
            ),
            r(
                "-100",
                1,
                0,
                5,
                "1/3/2016 12:40",
                "1 - Critical",
                "Group 2",
                "Resolver 7",
            ),
            r(
                "Active",
                1,
                0,
                6,
                "1/3/2016 13:00",
                "2 - High",
                "Group 2",
                "Resolver 7",
            ),
            r(
                "Resolved",
                1,
                0,
                7,
                "1/3/2016 14:00",
                "2 - High",
                "Group 2",
                "Resolver 7",
            ),
            r(
                "Active",
                1,
                1,
                8,
                "2/3/2016 09:00",
                "2 - High",
                "Group 2",
                "Resolver 8",
            ),
            r(
                "Resolved",
                1,
                1,
                9,
                "2/3/2016 10:00",
                "2 - High",
                "Group 2",
                "Resolver 8",
            ),
            r(
                "Closed",
                1,
                1,
                10,
                "7/3/2016 10:00",
                "2 - High",
                "Group 2",
                "Resolver 8",
            ),
            r(
                "Closed",
                1,
                1,
                11,
                "8/3/2016 10:00",
                "2 - High",
                "Group 2",
                "Resolver 8",
            ),
        ]);
        let k: Vec<String> = kinds(&conv, "INC1")
            .into_iter()
            .map(|(t, k)| format!("{} {k}", &t[8..16]))
            .collect();
        assert_eq!(
            k,
            [
                "01T10:00 opened",
                "01T10:00 transferred",
                "01T11:00 urgency_changed",
                "01T11:00 assigned",
                "01T11:00 agent_reply",
                "01T11:00 waiting_on_customer",
                "01T12:00 resumed",
                "01T12:00 on_hold",
                "01T13:00 urgency_changed",
                "01T13:00 resumed",
                "01T14:00 agent_reply",
                "01T14:00 resolved",
                "02T09:00 reopened",
                "02T09:00 assigned",
                "02T10:00 agent_reply",
                "02T10:00 resolved",
                "07T10:00 closed",
            ]
        );
        assert_eq!(conv.stats.unknown_state_rows, 1);
        match &conv.events[0].body {
            Body::Opened { channel, .. } => assert_eq!(*channel, Channel::Web),
            b => panic!("{b:?}"),
        }
        assert!(conv
            .events
            .iter()
            .any(|e| e.body == Body::UrgencyChanged(Urgency::Urgent)));
        assert_eq!(conv.cases[0].made_sla, Some(false));
    }

    #[test]
    fn rows_before_opening_are_clamped_and_time_ordered() {
        // INC0000135's shape: a row with a high sys_mod_count stamped before opened_at.
        let o = "29/2/2016 09:45";
        let r = |state, modc, t| {
            row(
                "INC2",
                state,
                0,
                0,
                modc,
                true,
                o,
                t,
                "Phone",
                "3 - Moderate",
                "Group 70",
                "Resolver 216",
            )
        };
        let conv = run(&[
            r("Active", 7, "29/2/2016 09:27"),
            r("Active", 1, "29/2/2016 11:45"),
            r("Resolved", 5, "29/2/2016 15:27"),
            r("Closed", 7, "5/3/2016 17:00"),
        ]);
        assert_eq!(conv.stats.clamped_rows, 1);
        let k = kinds(&conv, "INC2");
        assert_eq!(k[0], ("2016-02-29T09:45:00Z".into(), "opened".into()));
        assert_eq!(k[1], ("2016-02-29T09:45:00Z".into(), "assigned".into()));
        assert_eq!(k[2], ("2016-02-29T09:45:00Z".into(), "agent_reply".into()));
        let times: Vec<_> = conv.events.iter().map(|e| e.occurred_at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn malformed_rows_are_skipped_with_their_line() {
        let o = "1/3/2016 10:00";
        let good = row(
            "INC3",
            "New",
            0,
            0,
            0,
            true,
            o,
            "1/3/2016 10:05",
            "Phone",
            "3 - Moderate",
            "?",
            "?",
        );
        let bad_time = row(
            "INC3",
            "Active",
            0,
            0,
            1,
            true,
            o,
            "31/2/2016 10:05",
            "Phone",
            "3 - Moderate",
            "?",
            "?",
        );
        let bad_prio = row(
            "INC3",
            "Active",
            0,
            0,
            2,
            true,
            o,
            "1/3/2016 10:06",
            "Phone",
            "9 - Whatever",
            "?",
            "?",
        );
        let conv = run(&[good, bad_time, "INC3,New,true".into(), bad_prio]);
        assert_eq!(conv.stats.rows, 4);
        assert_eq!(conv.stats.skipped, 3);
        let lines: Vec<u64> = conv.stats.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert!(
            conv.stats.errors[0].message.contains("sys_updated_at"),
            "{}",
            conv.stats.errors[0]
        );
        assert!(
            conv.stats.errors[1].message.contains("3 fields"),
            "{}",
            conv.stats.errors[1]
        );
        assert!(
            conv.stats.errors[2].message.contains("priority"),
            "{}",
            conv.stats.errors[2]
        );
        assert_eq!(conv.stats.cases, 1);
        assert_eq!(conv.events.len(), 1);
    }

    #[test]
    fn missing_column_is_a_header_error() {
        let err = convert(
            "number,incident_state\nINC1,New\n".as_bytes(),
            &ConvertOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("reassignment_count"), "{err}");
    }

    #[test]
    fn idle_gap_ends_the_case() {
        let o = "1/3/2016 10:00";
        let r = |state, modc, t| {
            row(
                "INC4",
                state,
                0,
                0,
                modc,
                false,
                o,
                t,
                "Phone",
                "3 - Moderate",
                "G",
                "?",
            )
        };
        let rows = [
            r("Active", 1, "1/3/2016 10:05"),
            r("Resolved", 2, "5/4/2016 10:00"),
            r("Closed", 3, "10/4/2016 10:00"),
        ];
        let conv = run(&rows);
        assert_eq!(conv.events.len(), 2);
        assert_eq!(conv.stats.truncated_cases, 1);
        assert_eq!(conv.stats.dropped_events, 3);
        assert_eq!(conv.cases[0].dropped_events, 3);
        let text = format!("{HEADER}\n{}\n", rows.join("\n"));
        let all = convert(
            text.as_bytes(),
            &ConvertOptions {
                keep_all: true,
                tenant: Some("acme".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(all.events.len(), 5);
        assert!(all.events.iter().all(|e| e.tenant == "acme"));
    }

    #[test]
    fn times_parse_unpadded_and_reject_nonsense() {
        assert_eq!(
            parse_time("29/2/2016 01:16").map(crate::codec::rfc3339_z),
            Some("2016-02-29T01:16:00Z".to_string())
        );
        assert_eq!(
            parse_time("5/12/2016 23:59").map(crate::codec::rfc3339_z),
            Some("2016-12-05T23:59:00Z".to_string())
        );
        for bad in [
            "",
            "?",
            "29/2/2017 01:16",
            "1/1/2016",
            "1/1/2016 24:00",
            "a/1/2016 01:00",
            "1/1/2016/1 01:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
