//! The policy language: the shipped policy files compile cleanly to what docs/sla-semantics.md §3
//! says, and every kind of mistake is reported with its line, its message and a fix hint.
use slawatch::core::model::{Category, Channel, Role, Tier, Urgency};
use slawatch::core::policy::parse::{
    check_policy, load_policy_file, parse_policy, Diagnostic, Severity,
};
use slawatch::core::policy::{
    CalendarId, ClockKind, ClockSpec, LatencyMetric, Matcher, MatcherSet, OnReopen, Phase,
    PhaseSet, Policy, PolicySet,
};
use slawatch::core::time::Dur;
use std::path::PathBuf;

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Compiles a shipped file and insists on no diagnostics at all (no warnings either).
fn clean(rel: &str) -> PolicySet {
    let (set, diags) = check_policy(&read(rel), rel);
    assert!(
        diags.is_empty(),
        "{rel} has diagnostics:\n{}",
        diags.iter().map(|d| format!("{d}\n")).collect::<String>()
    );
    set.expect("no errors means a policy set")
}

fn policy<'a>(set: &'a PolicySet, id: &str) -> &'a Policy {
    set.policies
        .iter()
        .find(|p| &*p.id == id)
        .unwrap_or_else(|| panic!("no policy {id}"))
}

fn clock<'a>(p: &'a Policy, id: &str) -> &'a ClockSpec {
    p.clocks
        .iter()
        .find(|c| &*c.id == id)
        .unwrap_or_else(|| panic!("no clock {id} in {}", p.id))
}

fn ms(ms: &[Matcher]) -> MatcherSet {
    MatcherSet::of(ms)
}

fn secs(s: i64) -> Dur {
    Dur::from_secs(s)
}

fn ladder(c: &ClockSpec) -> Vec<(Dur, Vec<Role>)> {
    c.escalate
        .iter()
        .map(|s| (s.after, s.notify.to_vec()))
        .collect()
}

// ----- the shipped files ---------------------------------------------------------------

#[test]
fn default_and_strict_compile_without_any_diagnostic() {
    clean("deploy/policies/default.toml");
    clean("deploy/policies/strict.toml");
    clean("tests/policies/r12_cross_department.toml");
    clean("tests/policies/r24_root_cause.toml");
    // load_policy_file reads the same thing.
    let loaded = load_policy_file(&repo_file("deploy/policies/default.toml")).unwrap();
    assert_eq!(loaded.policies.len(), 6);
}

#[test]
fn default_policy_order_calendars_and_selectors() {
    let set = clean("deploy/policies/default.toml");
    let ids: Vec<&str> = set.policies.iter().map(|p| &*p.id).collect();
    assert_eq!(
        ids,
        [
            "chat-urgent",
            "chat",
            "urgent",
            "important",
            "complaint",
            "general"
        ]
    );
    assert_eq!(set.calendars.len(), 2);
    assert_eq!(&*set.calendars[0].name, "24x7");
    assert!(set.calendars[0].is_always_open());
    assert_eq!(&*set.calendars[1].name, "after-sales");
    assert!(!set.calendars[1].is_always_open());

    let sel = |id| policy(&set, id).selector.clone();
    assert_eq!(sel("chat-urgent").channel, Some(vec![Channel::Chat]));
    assert_eq!(sel("chat-urgent").urgency, Some(vec![Urgency::Urgent]));
    assert_eq!(sel("chat").channel, Some(vec![Channel::Chat]));
    assert_eq!(sel("chat").urgency, None);
    assert_eq!(sel("urgent").urgency, Some(vec![Urgency::Urgent]));
    assert_eq!(sel("important").urgency, Some(vec![Urgency::Important]));
    assert_eq!(sel("complaint").category, Some(vec![Category::Complaint]));
    assert_eq!(sel("general"), Default::default());

    assert_eq!(set.overlays.len(), 2);
    assert_eq!(&*set.overlays[0].id, "complaint");
    assert_eq!(
        set.overlays[0].selector.category,
        Some(vec![Category::Complaint])
    );
    assert_eq!(&*set.overlays[1].id, "vip");
    assert_eq!(set.overlays[1].selector.tier, Some(vec![Tier::Vip]));
    assert_eq!(set.surge, Default::default());
    assert_ne!(set.version, 0);
}

#[test]
fn default_chat_first_response_is_r1_60s_24x7_with_the_default_ladder() {
    let set = clean("deploy/policies/default.toml");
    let fr = clock(policy(&set, "chat"), "first_response");
    assert_eq!(&*fr.rule, "R1");
    assert_eq!(fr.target, secs(60));
    assert_eq!(fr.calendar, CalendarId(0));
    assert_eq!(fr.warn_at, vec![0.8]);
    assert_eq!(fr.kind, ClockKind::Deadline);
    assert_eq!(fr.start, ms(&[Matcher::Opened]));
    assert_eq!(fr.stop, ms(&[Matcher::AgentReply]));
    assert!(!fr.stop.contains(Matcher::AutoReply));
    assert_eq!(
        ladder(fr),
        vec![
            (secs(0), vec![Role::TeamLead]),
            (secs(60), vec![Role::Supervisor]),
            (secs(180), vec![Role::DepartmentHead]),
        ]
    );
    let urgent = clock(policy(&set, "chat-urgent"), "first_response");
    assert_eq!((&*urgent.rule, urgent.target), ("R2", secs(30)));
    assert_eq!(
        ladder(urgent).iter().map(|s| s.0).collect::<Vec<_>>(),
        [secs(0), secs(30), secs(90)]
    );
}

#[test]
fn default_common_clocks_match_section_3() {
    let set = clean("deploy/policies/default.toml");
    let chat = policy(&set, "chat");
    let ids: Vec<&str> = chat.clocks.iter().map(|c| &*c.id).collect();
    assert_eq!(
        ids,
        [
            "first_response",
            "next_response",
            "eta",
            "resolution",
            "progress",
            "supervisor_answer"
        ]
    );
    let nr = clock(chat, "next_response");
    assert_eq!((&*nr.rule, nr.target), ("R6", secs(180)));
    assert_eq!(nr.start, ms(&[Matcher::CustomerMessage]));
    assert_eq!(nr.after.as_deref(), Some("first_response"));
    assert_eq!(nr.phases, PhaseSet::DEFAULT);
    assert_eq!(nr.stop, ms(&[Matcher::AgentReply]));

    let eta = clock(chat, "eta");
    assert_eq!((&*eta.rule, eta.target), ("R8", secs(600)));
    assert!(eta.once);
    assert_eq!(eta.start, ms(&[Matcher::AgentReply]));
    assert_eq!(
        eta.stop,
        ms(&[
            Matcher::AgentReplyEta,
            Matcher::AgentReplySolution,
            Matcher::Resolved
        ])
    );

    let res = clock(chat, "resolution");
    assert_eq!((&*res.rule, res.target), ("R9", secs(1800)));
    // §3: paused while waiting or on hold (only `resumed` ends a hold), no event pauses.
    assert_eq!(
        res.paused_in,
        PhaseSet::of(&[Phase::Waiting, Phase::OnHold])
    );
    assert!(res.pause.is_empty() && res.resume.is_empty());
    assert_eq!(res.metric, Some(LatencyMetric::Resolution));
    assert_eq!(
        clock(chat, "first_response").metric,
        Some(LatencyMetric::FirstResponse)
    );
    assert_eq!(res.on_reopen, OnReopen::Restart);
    assert_eq!(clock(chat, "first_response").on_reopen, OnReopen::Keep);

    let progress = clock(chat, "progress");
    assert_eq!(&*progress.rule, "R10");
    assert_eq!(
        progress.kind,
        ClockKind::Recurring {
            every: secs(600),
            end: ms(&[Matcher::Resolved])
        }
    );
    assert_eq!(progress.target, secs(600));
    assert!(progress.warn_at.is_empty() && progress.escalate.is_empty());
    assert_eq!(progress.start, ms(&[Matcher::AgentReplyEta]));
    assert_eq!(progress.stop, ms(&[Matcher::AgentReplyProgress]));

    let sa = clock(chat, "supervisor_answer");
    assert_eq!((&*sa.rule, sa.target), ("R11", secs(300)));
    assert_eq!(sa.start, ms(&[Matcher::EscalatedSupervisor]));
    assert_eq!(sa.stop, ms(&[Matcher::EscalationAnsweredSupervisor]));
}

#[test]
fn default_urgent_important_complaint_general() {
    let set = clean("deploy/policies/default.toml");
    let after_sales = CalendarId(1);

    let urgent = policy(&set, "urgent");
    assert_eq!(urgent.actions.len(), 1);
    let a = &urgent.actions[0];
    assert_eq!(a.on, ms(&[Matcher::Opened]));
    assert_eq!(a.level, 1);
    assert_eq!(&*a.notify, &[Role::Supervisor, Role::DepartmentHead]);
    assert_eq!(&*a.reason, "urgent_opened");
    assert_eq!(&*a.rule, "R18");
    assert_eq!(&*a.clock, "urgent_notify");
    for c in &urgent.clocks {
        assert_eq!(c.calendar, CalendarId(0), "{} is 24x7", c.id);
    }
    assert_eq!(clock(urgent, "first_response").target, secs(300));
    let ra = clock(urgent, "responders_answer");
    assert_eq!((&*ra.rule, ra.target), ("R19", secs(900)));
    assert_eq!(ra.stop, ms(&[Matcher::EscalationAnsweredDepartmentHead]));
    let up = clock(urgent, "progress");
    assert!(up.once);
    assert_eq!(up.start, ms(&[Matcher::AgentReply]));
    assert_eq!(
        up.kind,
        ClockKind::Recurring {
            every: secs(1800),
            end: ms(&[Matcher::Resolved])
        }
    );
    let ur = clock(urgent, "resolution");
    assert_eq!((&*ur.rule, ur.target), ("R21", secs(4 * 3600)));

    let important = policy(&set, "important");
    for c in &important.clocks {
        assert_eq!(c.calendar, after_sales, "{} is on after-sales", c.id);
    }
    assert_eq!(&*clock(important, "supervisor_report").rule, "R15");
    assert_eq!(clock(important, "department_start").target, secs(4 * 3600));
    let ip = clock(important, "internal_progress");
    assert_eq!(ip.stop, ms(&[Matcher::InternalProgress]));
    assert!(matches!(ip.kind, ClockKind::Recurring { every, .. } if every == secs(7200)));
    assert_eq!(&*clock(important, "resolution").rule, "R17");

    let complaint = policy(&set, "complaint");
    assert_eq!(&*clock(complaint, "first_response").rule, "R4");
    assert_eq!(clock(complaint, "first_response").calendar, after_sales);
    let fu = clock(complaint, "follow_up");
    assert_eq!((&*fu.rule, fu.target), ("R23", secs(86_400)));
    assert_eq!(fu.calendar, CalendarId(0));
    assert!(fu.follow_up && fu.survives_close);
    assert_eq!(fu.start, ms(&[Matcher::Resolved]));
    assert_eq!(fu.stop, ms(&[Matcher::FollowUpDone]));
    assert_eq!(fu.phases, PhaseSet::of(&[Phase::Resolved]));
    assert_eq!(fu.warn_at, vec![0.8]);
    assert_eq!(fu.escalate.len(), 3);

    let general = policy(&set, "general");
    let gfr = clock(general, "first_response");
    assert_eq!((&*gfr.rule, gfr.target), ("R5", secs(300)));
    assert_eq!(gfr.calendar, after_sales);
    assert_eq!(&*set.calendar(gfr.calendar).name, "after-sales");
    assert_eq!(&*clock(general, "handoff").rule, "R13");
    assert_eq!(
        clock(general, "first_solution").stop,
        ms(&[Matcher::AgentReplySolution])
    );
    assert_eq!(clock(general, "resolution").target, secs(86_400));

    // The complaint and VIP overlays' follow-up is the complaint policy's, position aside.
    for overlay in &set.overlays {
        assert_eq!(
            ClockSpec {
                position: fu.position,
                ..overlay.clocks[0].clone()
            },
            fu.clone(),
            "{}",
            overlay.id
        );
    }

    let check = &set.checks[0];
    assert_eq!(set.checks.len(), 1);
    assert_eq!((&*check.id, &*check.rule), ("misroute", "R25"));
    assert_eq!(check.on, ms(&[Matcher::TransferredMisrouted]));
    assert_eq!(check.since, ms(&[Matcher::Assigned]));
    assert_eq!(check.target, secs(10));
}

#[test]
fn positions_follow_the_file_order() {
    let set = clean("deploy/policies/default.toml");
    let mut positions = Vec::new();
    for p in &set.policies {
        // In default.toml the urgent policy lists its action before its clocks.
        let mut items: Vec<u32> = p.actions.iter().map(|a| a.position).collect();
        items.extend(p.clocks.iter().map(|c| c.position));
        positions.extend(items);
    }
    positions.extend(
        set.overlays
            .iter()
            .flat_map(|o| o.clocks.iter().map(|c| c.position)),
    );
    positions.extend(set.checks.iter().map(|c| c.position));
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions not strictly increasing: {positions:?}"
    );
    assert_eq!(positions.first(), Some(&0));
    assert_eq!(positions.len(), 34);
    assert_eq!(*positions.last().unwrap() as usize, positions.len() - 1);
}

#[test]
fn strict_adds_the_r3_chat_inquiry_policy_after_chat_urgent() {
    let strict = clean("deploy/policies/strict.toml");
    let default = clean("deploy/policies/default.toml");
    let ids: Vec<&str> = strict.policies.iter().map(|p| &*p.id).collect();
    assert_eq!(
        ids,
        [
            "chat-urgent",
            "chat-inquiry-strict",
            "chat",
            "urgent",
            "important",
            "complaint",
            "general"
        ]
    );
    let p = policy(&strict, "chat-inquiry-strict");
    assert_eq!(p.selector.channel, Some(vec![Channel::Chat]));
    assert_eq!(p.selector.category, Some(vec![Category::Inquiry]));
    let fr = clock(p, "first_response");
    assert_eq!((&*fr.rule, fr.target), ("R3", secs(30)));
    // The rest is the chat policy's.
    let chat = policy(&default, "chat");
    for (a, b) in p.clocks.iter().zip(&chat.clocks).skip(1) {
        assert_eq!(
            ClockSpec {
                position: b.position,
                ..a.clone()
            },
            *b
        );
    }
    assert_eq!(p.clocks.len(), chat.clocks.len());
}

#[test]
fn r12_and_r24_are_expressible() {
    let r12 = clean("tests/policies/r12_cross_department.toml");
    let p = &r12.policies[0];
    let sync = clock(p, "department_sync");
    assert_eq!((&*sync.rule, sync.target), ("R12", secs(900)));
    assert_eq!(sync.start, ms(&[Matcher::DepartmentRequested]));
    assert_eq!(sync.stop, ms(&[Matcher::AgentReply]));
    let answer = clock(p, "department_answer");
    assert_eq!((&*answer.rule, answer.target), ("R12", secs(7200)));

    let r24 = clean("tests/policies/r24_root_cause.toml");
    let form = clock(&r24.policies[0], "root_cause_form");
    assert_eq!((&*form.rule, form.target), ("R24", secs(86_400)));
    assert_eq!(form.start, ms(&[Matcher::Resolved]));
    assert_eq!(form.phases, PhaseSet::of(&[Phase::Resolved]));
    assert!(form.survives_close);
}

/// `R1` as a whole token (not the prefix of `R12`).
fn mentions(text: &str, rule: &str) -> bool {
    text.match_indices(rule).any(|(i, _)| {
        !text[i + rule.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn every_timed_rule_appears_in_a_policy_file() {
    let default = read("deploy/policies/default.toml");
    for n in 1..=25 {
        let rule = format!("R{n}");
        match n {
            3 | 12 | 24 => assert!(!mentions(&default, &rule), "{rule} is not a default rule"),
            _ => assert!(mentions(&default, &rule), "default.toml lacks {rule}"),
        }
    }
    assert!(mentions(&read("deploy/policies/strict.toml"), "R3"));
    assert!(mentions(
        &read("tests/policies/r12_cross_department.toml"),
        "R12"
    ));
    assert!(mentions(&read("tests/policies/r24_root_cause.toml"), "R24"));

    // And as compiled rule ids (R22 is a behaviour, `on_reopen = "restart"`, not a clock).
    let set = clean("deploy/policies/default.toml");
    let mut rules: Vec<String> = set
        .policies
        .iter()
        .flat_map(|p| {
            p.clocks
                .iter()
                .map(|c| c.rule.to_string())
                .chain(p.actions.iter().map(|a| a.rule.to_string()))
        })
        .chain(set.checks.iter().map(|c| c.rule.to_string()))
        .collect();
    rules.sort_by_key(|r| r[1..].parse::<u32>().unwrap());
    rules.dedup();
    let expected: Vec<String> = (1..=25)
        .filter(|n| ![3, 12, 22, 24].contains(n))
        .map(|n| format!("R{n}"))
        .collect();
    assert_eq!(rules, expected);
}

// ----- diagnostics -----------------------------------------------------------------------

/// A valid file to break in one place. Line numbers below refer to this layout.
const BASE: &str = r#"[[calendar]]
name = "office"
tz = "Europe/Berlin"
daily = ["09:00-17:00"]

[[policy]]
id = "general"

[[policy.clock]]
id = "first_response"
rule = "R5"
start = "opened"
stop = "agent_reply"
target = "5m"
calendar = "office"
"#;

fn diags(src: &str) -> Vec<Diagnostic> {
    check_policy(src, "t.toml").1
}

/// The only diagnostic of `src`, which must be an error.
fn the_error(src: &str) -> Diagnostic {
    let (set, ds) = check_policy(src, "t.toml");
    assert!(set.is_none(), "an error must fail the file");
    assert_eq!(
        ds.len(),
        1,
        "expected one diagnostic, got:\n{}",
        render(&ds)
    );
    assert_eq!(ds[0].severity, Severity::Error);
    ds[0].clone()
}

fn the_warning(src: &str) -> Diagnostic {
    let (set, ds) = check_policy(src, "t.toml");
    assert!(
        set.is_some(),
        "warnings do not fail the file:\n{}",
        render(&ds)
    );
    assert_eq!(
        ds.len(),
        1,
        "expected one diagnostic, got:\n{}",
        render(&ds)
    );
    assert_eq!(ds[0].severity, Severity::Warning);
    ds[0].clone()
}

fn render(ds: &[Diagnostic]) -> String {
    ds.iter().map(|d| format!("{d}\n")).collect()
}

fn with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old}");
    BASE.replacen(old, new, 1)
}

fn hint(d: &Diagnostic) -> &str {
    d.hint.as_deref().unwrap_or("")
}

#[test]
fn base_is_clean() {
    assert!(diags(BASE).is_empty(), "{}", render(&diags(BASE)));
}

#[test]
fn unknown_matcher() {
    let d = the_error(&with(
        r#"stop = "agent_reply""#,
        r#"stop = ["agent_replied"]"#,
    ));
    assert_eq!(d.message, r#"unknown matcher "agent_replied""#);
    assert_eq!((d.line, d.column), (13, 9));
    assert_eq!(hint(&d), r#"did you mean "agent_reply"?"#);
    assert_eq!(
        d.to_string(),
        "t.toml:13:9: error: unknown matcher \"agent_replied\"\n  hint: did you mean \"agent_reply\"?"
    );
    // Far from everything: the hint lists the matchers.
    let d = the_error(&with(r#"stop = "agent_reply""#, r#"stop = "zzz""#));
    assert!(hint(&d).starts_with("matchers are: opened, customer_message, agent_reply"));
}

#[test]
fn unknown_role_in_a_matcher() {
    let d = the_error(&with(
        r#"start = "opened""#,
        r#"start = "escalated:supervisr""#,
    ));
    assert_eq!(
        d.message,
        r#"unknown role "supervisr" in matcher "escalated:supervisr""#
    );
    assert_eq!(d.line, 12);
    assert_eq!(hint(&d), r#"did you mean "supervisor"?"#);
}

#[test]
fn unknown_field() {
    let d = the_error(&with(
        r#"target = "5m""#,
        r#"tagret = "5m"
target = "5m""#,
    ));
    assert_eq!(d.message, r#"unknown field "tagret" in [[policy.clock]]"#);
    assert_eq!((d.line, d.column), (14, 1));
    assert!(hint(&d)
        .starts_with(r#"did you mean "target"? allowed fields: id, rule, start, once, after"#));
    // At the top level, with the allowed list only.
    let d = the_error(&format!("policies_v2 = 1\n{BASE}"));
    assert_eq!(d.message, r#"unknown field "policies_v2" in the top level"#);
    assert_eq!(d.line, 1);
    assert_eq!(
        hint(&d),
        "allowed fields: calendar, defaults, surge, policy, overlay, check"
    );
}

#[test]
fn missing_field() {
    let d = the_error(&with("rule = \"R5\"\n", ""));
    assert_eq!(d.message, r#"missing field "rule" in [[policy.clock]]"#);
    assert_eq!(d.line, 9);
    assert_eq!(hint(&d), r#"add rule = "R1""#);
}

#[test]
fn target_must_be_positive() {
    let d = the_error(&with(r#"target = "5m""#, r#"target = "0s""#));
    assert_eq!(d.message, r#""target" must be greater than zero"#);
    assert_eq!((d.line, d.column), (14, 10));
    assert_eq!(hint(&d), r#"give a positive duration, e.g. target = "5m""#);

    let d = the_error(&with(r#"target = "5m""#, r#"target = "-5m""#));
    assert_eq!(
        d.message,
        r#"malformed duration for "target": invalid duration "-5m": negative durations are not allowed"#
    );
    assert_eq!(d.line, 14);
}

#[test]
fn malformed_duration() {
    let d = the_error(&with(r#"target = "5m""#, r#"target = "5 minutes""#));
    assert!(d
        .message
        .starts_with(r#"malformed duration for "target": invalid duration "5 minutes""#));
    assert_eq!(d.line, 14);
    assert_eq!(
        hint(&d),
        r#"durations look like "30s", "5m", "4h", "2d" or "1h30m""#
    );
    let d = the_error(&with(r#"target = "5m""#, "target = 300"));
    assert_eq!(
        d.message,
        r#""target" must be a duration string, found integer"#
    );
    assert_eq!(
        hint(&d),
        r#"durations are strings with a unit, e.g. target = "300s""#
    );
}

#[test]
fn unknown_calendar_lists_the_defined_ones() {
    let d = the_error(&with(r#"calendar = "office""#, r#"calendar = "ofice""#));
    assert_eq!(d.message, r#"unknown calendar "ofice""#);
    assert_eq!((d.line, d.column), (15, 12));
    assert_eq!(
        hint(&d),
        r#"did you mean "office"? defined calendars: 24x7, office"#
    );
}

#[test]
fn builtin_calendar_cannot_be_redefined() {
    let src = with(r#"name = "office""#, r#"name = "24x7""#)
        .replace(r#"calendar = "office""#, r#"calendar = "24x7""#);
    let d = the_error(&src);
    assert_eq!(
        d.message,
        r#"calendar "24x7" is built in and cannot be redefined"#
    );
    assert_eq!((d.line, d.column), (2, 8));
    assert_eq!(
        hint(&d),
        r#"use calendar = "24x7" directly, or give this calendar another name"#
    );
    // A clock still naming the calendar is reported too: all errors are collected.
    let all = diags(&with(r#"name = "office""#, r#"name = "24x7""#));
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].message, r#"unknown calendar "office""#);
}

#[test]
fn unknown_time_zone() {
    let d = the_error(&with("Europe/Berlin", "Europe/Berln"));
    assert_eq!(d.message, r#"unknown time zone "Europe/Berln""#);
    assert_eq!((d.line, d.column), (3, 6));
    assert_eq!(hint(&d), r#"did you mean "Europe/Berlin"?"#);
}

#[test]
fn bad_hours() {
    let d = the_error(&with(
        r#"["09:00-17:00"]"#,
        r#"["09:00-17:00", "9.00-17:00"]"#,
    ));
    assert_eq!(
        d.message,
        r#"bad hours "9.00-17:00": "9.00" is not a time of day (HH:MM)"#
    );
    assert_eq!((d.line, d.column), (4, 25));
    assert!(hint(&d).starts_with(r#"write intervals as "HH:MM-HH:MM""#));
    let d = the_error(&with(r#"["09:00-17:00"]"#, r#"["24:00-02:00"]"#));
    assert_eq!(
        d.message,
        r#"bad hours "24:00-02:00": 24:00 can only end an interval"#
    );
    let d = the_error(&with(
        r#"daily = ["09:00-17:00"]"#,
        r#"hours = { mon = ["09:00-17:00"], tues = ["09:00-17:00"] }"#,
    ));
    assert_eq!(d.message, r#"unknown day "tues" in hours"#);
    assert_eq!(hint(&d), r#"did you mean "tue"?"#);
}

#[test]
fn calendar_hours_forms_compile() {
    let src = with(
        r#"daily = ["09:00-17:00"]"#,
        r#"daily = ["08:30-17:30", "17:00-24:00"]
hours = { sat = "17:00-01:00", sun = [] }
holidays = ["2024-10-01..2024-10-07", 2025-01-01]
special = [{ date = "2024-09-29", hours = ["08:30-17:30"] }]"#,
    );
    let set = parse_policy(&src, "t.toml").unwrap_or_else(|d| panic!("{}", render(&d)));
    assert_eq!(set.calendars.len(), 2);
}

#[test]
fn duplicate_and_overlapping_holidays() {
    let d = the_error(&with(
        r#"daily = ["09:00-17:00"]"#,
        r#"daily = ["09:00-17:00"]
holidays = ["2024-10-01..2024-10-07",
  "2024-10-03"]"#,
    ));
    assert_eq!(
        d.message,
        "holiday 2024-10-03 is listed twice (overlapping holiday entries)"
    );
    assert_eq!((d.line, d.column), (6, 3));
    assert_eq!(
        hint(&d),
        "already listed at line 5; remove the duplicate or shorten the range"
    );
}

#[test]
fn holiday_that_is_also_a_special_date() {
    let d = the_error(&with(
        r#"daily = ["09:00-17:00"]"#,
        r#"daily = ["09:00-17:00"]
holidays = ["2024-10-01"]
[[calendar.special]]
date = "2024-10-01"
hours = ["10:00-12:00"]"#,
    ));
    assert_eq!(d.message, "2024-10-01 is both a holiday and a special date");
    assert_eq!((d.line, d.column), (7, 8));
    assert!(hint(&d).starts_with("the holiday entry is at line 5"));
}

#[test]
fn special_working_date_inside_a_holiday_range_takes_precedence() {
    // Given a closed week with one adjusted working day inside it (special > holiday),
    let src = with(
        r#"daily = ["09:00-17:00"]"#,
        r#"daily = ["09:00-17:00"]
holidays = ["2024-09-30..2024-10-06"]
[[calendar.special]]
date = "2024-10-03"
hours = ["10:00-12:00"]"#,
    );
    // when the file is checked, then it is accepted
    assert!(diags(&src).is_empty(), "{}", render(&diags(&src)));
    // and the special date's hours are the only open time of the week (Europe/Berlin).
    let set = parse_policy(&src, "t.toml").unwrap();
    let office = set.calendars.iter().find(|c| &*c.name == "office").unwrap();
    let at = |s: &str| slawatch::core::time::Ts::parse_rfc3339(s).unwrap();
    assert_eq!(
        office.counted(at("2024-09-29T22:00:00Z"), at("2024-10-06T22:00:00Z")),
        Dur::from_secs(2 * 3600)
    );
    assert_eq!(
        office.counted(at("2024-10-03T08:00:00Z"), at("2024-10-03T10:00:00Z")),
        Dur::from_secs(2 * 3600)
    );
}

#[test]
fn unknown_selector_values_roles_and_phases() {
    let cases = [
        (
            r#"channel = "chatt""#,
            "unknown channel \"chatt\"",
            "did you mean \"chat\"?",
        ),
        (
            r#"category = "complain""#,
            "unknown category \"complain\"",
            "did you mean \"complaint\"?",
        ),
        (
            r#"urgency = "critical""#,
            "unknown urgency \"critical\"",
            "urgencies are: general, important, urgent",
        ),
        (
            r#"tier = "gold""#,
            "unknown tier \"gold\"",
            "tiers are: standard, vip",
        ),
    ];
    for (line, message, expected_hint) in cases {
        let d = the_error(&with(
            "id = \"general\"",
            &format!("id = \"general\"\n{line}"),
        ));
        assert_eq!(d.message, message);
        assert_eq!((d.line, d.column), (8, line.find('"').unwrap() + 1));
        assert_eq!(hint(&d), expected_hint);
    }

    let d = the_error(&with(
        r#"start = "opened""#,
        "start = \"opened\"\nphases = [\"open\", \"waitng\"]",
    ));
    assert_eq!(d.message, "unknown phase \"waitng\"");
    assert_eq!(d.line, 13);
    assert_eq!(hint(&d), "did you mean \"waiting\"?");

    let d = the_error(&with(
        r#"start = "opened""#,
        "start = \"opened\"\nphases = [\"open\", \"closed\"]",
    ));
    assert_eq!(d.message, "clocks never start in the closed phase");

    let d = the_error(&with(
        r#"calendar = "office""#,
        "calendar = \"office\"\nescalate = [{ after = \"0x\", notify = \"boss\" }]",
    ));
    assert_eq!(d.message, "unknown role \"boss\"");
    assert_eq!(d.line, 16);
    assert_eq!(
        hint(&d),
        "roles are: agent, team_lead, supervisor, department_head"
    );
}

#[test]
fn warn_at_outside_unit_interval_or_not_ascending() {
    let d = the_error(&with(
        r#"target = "5m""#,
        "target = \"5m\"\nwarn_at = [0.5, 1.2]",
    ));
    assert_eq!(d.message, "warn_at fraction 1.2 is outside (0, 1)");
    assert_eq!((d.line, d.column), (15, 17));
    assert!(hint(&d).contains("e.g. warn_at = [0.5, 0.8]"));

    let d = the_error(&with(
        r#"target = "5m""#,
        "target = \"5m\"\nwarn_at = [0.8, 0.5]",
    ));
    assert_eq!(
        d.message,
        "warn_at fractions must be ascending: 0.5 comes after 0.8"
    );
    assert_eq!(d.line, 15);
    assert_eq!(
        hint(&d),
        "list each fraction once, smallest first, e.g. [0.5, 0.8]"
    );
}

const SECOND_CLOCK: &str = r#"
[[policy.clock]]
id = "next_response"
rule = "R7"
start = "customer_message"
after = "first_response"
stop = "agent_reply"
target = "10m"
"#;

#[test]
fn duplicate_clock_id() {
    let src = format!(
        "{BASE}{}",
        SECOND_CLOCK.replace("id = \"next_response\"", "id = \"first_response\"")
    );
    let ds = diags(&src);
    let d = ds
        .iter()
        .find(|d| d.message == "duplicate clock id \"first_response\"")
        .unwrap_or_else(|| panic!("{}", render(&ds)));
    assert_eq!((d.line, d.column), (18, 6));
    assert_eq!(
        hint(d),
        "first defined at line 10; clock ids must be unique within a policy or overlay"
    );
}

#[test]
fn duplicate_policy_id() {
    let src = format!("{BASE}\n[[policy]]\nid = \"general\"\n");
    let ds = diags(&src);
    let d = ds.iter().find(|d| d.is_error()).unwrap();
    assert_eq!(d.message, "duplicate policy id \"general\"");
    assert_eq!((d.line, d.column), (18, 6));
    assert_eq!(
        hint(d),
        "first defined at line 7; policy ids must be unique"
    );
}

#[test]
fn after_must_name_another_clock_of_the_policy() {
    let d = the_error(&format!(
        "{BASE}{}",
        SECOND_CLOCK.replace("after = \"first_response\"", "after = \"first_respons\"")
    ));
    assert_eq!(
        d.message,
        "\"after\" names an unknown clock \"first_respons\""
    );
    assert_eq!((d.line, d.column), (21, 9));
    assert_eq!(
        hint(&d),
        "did you mean \"first_response\"? clocks here: first_response, next_response"
    );

    let d = the_error(&format!(
        "{BASE}{}",
        SECOND_CLOCK.replace("after = \"first_response\"", "after = \"next_response\"")
    ));
    assert_eq!(
        d.message,
        "clock \"next_response\" waits for itself (after = \"next_response\")"
    );
    assert_eq!(d.line, 21);

    let cyclic = format!("{BASE}{SECOND_CLOCK}").replacen(
        "target = \"5m\"",
        "target = \"5m\"\nafter = \"next_response\"",
        1,
    );
    let d = the_error(&cyclic);
    assert_eq!(
        d.message,
        "clocks wait for each other in a cycle: first_response → next_response → first_response"
    );
    assert_eq!(d.line, 15);
}

#[test]
fn escalation_ladder_must_increase() {
    let d = the_error(&with(
        r#"target = "5m""#,
        "target = \"5m\"\nescalate = [\n  { after = \"10m\", notify = \"team_lead\" },\n  { after = \"2x\", notify = \"supervisor\" },\n]",
    ));
    assert_eq!(
        d.message,
        "escalation steps must be strictly increasing in \"after\": step 2 (\"2x\" = 10m for a 5m target) is not after step 1 (\"10m\")"
    );
    assert_eq!((d.line, d.column), (17, 13));
    assert!(hint(&d).starts_with("order the steps by time past the deadline"));

    // Steps of the same form are compared once, in [defaults], not per clock.
    let d = the_error(&format!(
        "[defaults]\nescalate = [{{ after = \"1x\", notify = \"team_lead\" }}, {{ after = \"1x\", notify = \"supervisor\" }}]\n{BASE}{SECOND_CLOCK}"
    ));
    assert_eq!(
        d.message,
        "escalation steps must be strictly increasing in \"after\": step 2 (\"1x\") is not after step 1 (\"1x\")"
    );
    assert_eq!((d.line, d.column), (2, 63));

    // Multiples resolve against each clock's target; "escalate = []" disables the ladder.
    let src = format!(
        "[defaults]\nescalate = [{{ after = \"0s\", notify = \"team_lead\" }}, {{ after = \"1.5x\", notify = [\"supervisor\", \"department_head\"] }}]\n{}",
        format!("{BASE}{SECOND_CLOCK}").replace("target = \"10m\"", "target = \"10m\"\nescalate = []")
    );
    let set = parse_policy(&src, "t.toml").unwrap_or_else(|d| panic!("{}", render(&d)));
    let c = &set.policies[0].clocks;
    assert_eq!(
        ladder(&c[0]),
        vec![
            (secs(0), vec![Role::TeamLead]),
            (secs(450), vec![Role::Supervisor, Role::DepartmentHead])
        ]
    );
    assert!(c[1].escalate.is_empty());
}

#[test]
fn action_without_notify() {
    let src = with(
        "id = \"general\"\n",
        "id = \"general\"\n\n[[policy.action]]\non = \"opened\"\nescalate = { level = 1, reason = \"urgent_opened\" }\nrule = \"R18\"\nclock = \"urgent_notify\"\n",
    );
    let d = the_error(&src);
    assert_eq!(
        d.message,
        "action has no \"notify\": its escalation would tell no one"
    );
    assert_eq!((d.line, d.column), (11, 12));
    assert!(hint(&d).starts_with("add notify = [\"supervisor\"] to the escalate table"));
}

#[test]
fn recurring_clocks_never_warn_or_escalate() {
    let src = with(
        "target = \"5m\"",
        "every = \"10m\"\nend = \"resolved\"\nwarn_at = [0.8]",
    );
    let d = the_error(&src);
    assert_eq!(
        d.message,
        "recurring clock \"first_response\" cannot have \"warn_at\": reminders never breach or escalate"
    );
    assert_eq!((d.line, d.column), (16, 1));
    assert_eq!(
        hint(&d),
        "remove \"warn_at\", or remove \"every\" to make it a deadline clock with a target"
    );
    // [defaults] do not apply to recurring clocks.
    let src = format!(
        "[defaults]\nwarn_at = [0.8]\nescalate = [{{ after = \"0x\", notify = \"team_lead\" }}]\n{}",
        with("target = \"5m\"", "every = \"10m\"")
    );
    let set = parse_policy(&src, "t.toml").unwrap_or_else(|d| panic!("{}", render(&d)));
    let c = &set.policies[0].clocks[0];
    assert!(c.warn_at.is_empty() && c.escalate.is_empty());
    assert_eq!(c.target, secs(600));
}

#[test]
fn end_needs_every_and_deadline_clocks_need_stop() {
    let d = the_error(&with(
        "target = \"5m\"",
        "target = \"5m\"\nend = \"resolved\"",
    ));
    assert_eq!(
        d.message,
        "\"end\" only applies to recurring clocks, and \"first_response\" has no \"every\""
    );
    assert_eq!(d.line, 15);
    let d = the_error(&with("stop = \"agent_reply\"\n", ""));
    assert_eq!(
        d.message,
        "clock \"first_response\" has no \"stop\": nothing could meet its target"
    );
    assert_eq!(d.line, 9);
}

#[test]
fn start_on_resolved_needs_the_resolved_phase() {
    let d = the_error(&with(r#"start = "opened""#, r#"start = ["resolved"]"#));
    assert_eq!(
        d.message,
        "\"resolved\" can never start clock \"first_response\": the ticket is resolved after it, which is not in \"phases\""
    );
    assert_eq!((d.line, d.column), (12, 10));
    assert_eq!(
        hint(&d),
        "add \"resolved\" to phases, e.g. phases = [\"resolved\"]"
    );
}

#[test]
fn unreachable_policy_is_a_warning() {
    let src = format!("{BASE}\n[[policy]]\nid = \"chat\"\nchannel = \"chat\"\n");
    let d = the_warning(&src);
    assert_eq!(
        d.message,
        "policy \"chat\" is unreachable: policy \"general\" (line 6) comes first and matches every ticket it would"
    );
    assert_eq!((d.line, d.column), (17, 1));
    assert!(
        hint(&d).starts_with("the first matching policy wins; move \"chat\" before \"general\"")
    );
    assert!(d
        .to_string()
        .starts_with("t.toml:17:1: warning: policy \"chat\""));
    // Warnings do not fail parse_policy.
    assert!(parse_policy(&src, "t.toml").is_ok());
}

#[test]
fn missing_catch_all_is_a_warning() {
    let d = the_warning(&with(
        "id = \"general\"",
        "id = \"general\"\nchannel = [\"email\", \"phone\"]",
    ));
    assert_eq!(
        d.message,
        "no catch-all policy: tickets matching no policy get no clocks"
    );
    assert_eq!(d.line, 6);
    assert!(hint(&d).starts_with("end the file with a [[policy]] that has no selector fields"));
    // A selector listing every value of a field is a catch-all too.
    assert!(diags(&with(
        "id = \"general\"",
        "id = \"general\"\nurgency = [\"general\", \"important\", \"urgent\"]"
    ))
    .is_empty());
}

#[test]
fn array_of_tables_written_as_a_table() {
    let d = the_error(
        &BASE
            .replace("[[policy]]", "[policy]")
            .replace("[[policy.clock]]", "[policy.clock]"),
    );
    assert_eq!(
        d.message,
        "\"policy\" must be an array of tables, found table"
    );
    assert_eq!(d.line, 6);
    assert_eq!(hint(&d), "write [[policy]] (one per entry), not [policy]");
}

#[test]
fn invalid_toml() {
    let d = the_error(&with(r#"rule = "R5""#, r#"rule = "R5"#));
    assert!(d.message.starts_with("invalid TOML:"), "{}", d.message);
    assert_eq!(d.line, 11);
}

#[test]
fn all_errors_are_collected() {
    let src = with(r#"stop = "agent_reply""#, r#"stop = "agent_replied""#)
        .replace(r#"target = "5m""#, r#"target = "5x""#)
        .replace("Europe/Berlin", "Mars/Olympus")
        .replace(r#"rule = "R5""#, "rule = \"R5\"\ncolour = \"red\"");
    let ds = diags(&src);
    let lines: Vec<usize> = ds.iter().map(|d| d.line).collect();
    assert_eq!(lines, [3, 12, 14, 15], "{}", render(&ds));
    assert!(ds.iter().all(Diagnostic::is_error));
    let err = parse_policy(&src, "t.toml").unwrap_err();
    assert_eq!(err, ds);
}

#[test]
fn unreadable_file() {
    let err = load_policy_file(std::path::Path::new("/nonexistent/policy.toml")).unwrap_err();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].line, 0);
    assert!(err[0]
        .to_string()
        .starts_with("/nonexistent/policy.toml: error: cannot read policy file"));
}

#[test]
fn version_is_a_stable_hash_of_the_source() {
    let a = parse_policy(BASE, "a.toml").unwrap();
    let b = parse_policy(BASE, "b.toml").unwrap();
    let c = parse_policy(&format!("{BASE}# comment\n"), "a.toml").unwrap();
    assert_eq!(a.version, b.version);
    assert_ne!(a.version, c.version);
    assert_eq!(a.version, xxhash_rust::xxh3::xxh3_64(BASE.as_bytes()));
}
