//! The policy file (TOML) → a validated, compiled [`PolicySet`].
//!
//! The checker walks the spanned TOML tree itself instead of deserializing with serde, so it
//! can report *every* problem with a line, a column and a fix hint rather than stopping at
//! the first one. Every table has a closed list of fields (`deny_unknown_fields` semantics:
//! an unknown key is an error that names the allowed ones).
//!
//! Schema (see `deploy/policies/default.toml` for a complete file):
//!
//! ```toml
//! [defaults]                      # optional; applied to every non-recurring clock
//! warn_at  = [0.8]                # fractions of the target, ascending, each in (0, 1)
//! escalate = [                    # the breach ladder; `after` past the deadline
//!   { after = "0x", notify = "team_lead" },        # "Nx" = N × the clock's target
//!   { after = "1x", notify = ["supervisor"] },     # or a duration: "0s", "5m"
//! ]
//!
//! [surge]                         # optional; R26 thresholds (defaults shown)
//! enabled = true
//! window = "5m"                   # whole minutes
//! baseline = "1h"                 # whole minutes
//! start_ratio = 3.0
//! end_ratio = 1.5
//! min_tickets = 20
//! baseline_floor_per_min = 1.0
//!
//! [[calendar]]                    # `24x7` is built in and cannot be redefined
//! name = "after-sales"
//! tz = "Asia/Shanghai"            # IANA time zone
//! daily = ["08:30-17:30", "17:00-24:00"]   # every day; overlapping intervals are merged
//! hours = { sat = ["10:00-16:00"], sun = [] }  # per day (mon..sun); replaces `daily`
//! holidays = ["2024-10-01..2024-10-07", "2025-01-01"]  # closed dates / inclusive ranges
//! [[calendar.special]]            # a date with its own hours (beats holidays and weekly)
//! date = "2024-09-29"
//! hours = ["08:30-17:30"]
//!
//! [[policy]]                      # first match wins, in file order
//! id = "chat"
//! channel = "chat"                # selector: channel, category, urgency, tier, tenant,
//!                                 # team; each a string or a list; absent = any
//! [[policy.clock]]
//! id = "first_response"
//! rule = "R1"
//! start = "opened"                # matcher(s)
//! stop = ["agent_reply"]
//! target = "60s"
//! calendar = "24x7"               # default 24x7
//! # optional: once, after, phases, pause, resume, warn_at, escalate, every, end,
//! #           on_reopen ("keep" | "restart"), survives_close, follow_up
//! [[policy.action]]
//! on = "opened"
//! escalate = { level = 1, notify = ["supervisor"], reason = "urgent_opened" }
//! rule = "R18"
//! clock = "urgent_notify"
//!
//! [[overlay]]                     # clocks added to whatever policy matched
//! id = "vip"
//! tier = "vip"
//! [[overlay.clock]]
//! # ... as [[policy.clock]]
//!
//! [[check]]                       # event-evaluated rule (no timer)
//! id = "misroute"
//! rule = "R25"
//! on = "transferred:misrouted"
//! since = "assigned"
//! target = "10s"
//! ```
mod pausing;

use super::compiled::*;
use super::diagnostics::{join, nearest, suggest, Sink};
pub use super::diagnostics::{render, Diagnostic, Severity};
use crate::core::calendar::{Calendar, LocalInterval};
use crate::core::model::{Category, Channel, Role, Tier, Urgency};
use crate::core::time::Dur;
use chrono::NaiveDate;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

type Span = Range<usize>;
type Val<'i> = Spanned<DeValue<'i>>;

/// The built-in always-open calendar, `CalendarId(0)`.
pub const ALWAYS_OPEN: &str = "24x7";

const ROOT_FIELDS: &[&str] = &[
    "calendar", "defaults", "surge", "policy", "overlay", "check",
];
const CALENDAR_FIELDS: &[&str] = &["name", "tz", "daily", "hours", "holidays", "special"];
const SPECIAL_FIELDS: &[&str] = &["date", "hours"];
const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DEFAULTS_FIELDS: &[&str] = &["warn_at", "escalate"];
const SURGE_FIELDS: &[&str] = &[
    "enabled",
    "window",
    "baseline",
    "start_ratio",
    "end_ratio",
    "min_tickets",
    "baseline_floor_per_min",
];
const SELECTOR_FIELDS: &[&str] = &["channel", "category", "urgency", "tier", "tenant", "team"];
const POLICY_FIELDS: &[&str] = &[
    "id", "channel", "category", "urgency", "tier", "tenant", "team", "clock", "action",
];
const OVERLAY_FIELDS: &[&str] = &[
    "id", "channel", "category", "urgency", "tier", "tenant", "team", "clock",
];
const CLOCK_FIELDS: &[&str] = &[
    "id",
    "rule",
    "start",
    "once",
    "after",
    "phases",
    "stop",
    "pause",
    "resume",
    "paused_in",
    "metric",
    "target",
    "calendar",
    "warn_at",
    "every",
    "end",
    "escalate",
    "on_reopen",
    "survives_close",
    "follow_up",
];
const ACTION_FIELDS: &[&str] = &["on", "escalate", "rule", "clock"];
const ACTION_ESCALATE_FIELDS: &[&str] = &["level", "notify", "reason"];
const STEP_FIELDS: &[&str] = &["after", "notify"];
const CHECK_FIELDS: &[&str] = &["id", "rule", "on", "since", "target"];
/// Phases a clock may start in (`closed` is not one of them).
const START_PHASES: &[(Phase, &str)] = &[
    (Phase::Open, "open"),
    (Phase::Waiting, "waiting"),
    (Phase::OnHold, "on_hold"),
    (Phase::Resolved, "resolved"),
];
const DURATION_HINT: &str = "durations look like \"30s\", \"5m\", \"4h\", \"2d\" or \"1h30m\"";
const HOURS_HINT: &str = "write intervals as \"HH:MM-HH:MM\", e.g. \"08:30-17:30\"; an end at or \
                          before the start crosses midnight (\"17:00-01:00\"); \"24:00\" ends at midnight";

/// Parses and compiles a policy file. Warnings do not fail it (see [`check_policy`] to get
/// them); on failure every diagnostic (errors and warnings) is returned in source order.
pub fn parse_policy(source: &str, file_name: &str) -> Result<PolicySet, Vec<Diagnostic>> {
    match check_policy(source, file_name) {
        (Some(set), _) => Ok(set),
        (None, diagnostics) => Err(diagnostics),
    }
}

/// Reads and parses a policy file; diagnostics name the file as given.
pub fn load_policy_file(path: &Path) -> Result<PolicySet, Vec<Diagnostic>> {
    match check_policy_file(path) {
        (Some(set), _) => Ok(set),
        (None, diagnostics) => Err(diagnostics),
    }
}

/// Parses and compiles a policy file, returning every diagnostic (errors and warnings) in
/// source order, and the compiled set when there is no error. `slawatch policy check` prints
/// the diagnostics and exits non-zero when the set is `None`.
pub fn check_policy(source: &str, file_name: &str) -> (Option<PolicySet>, Vec<Diagnostic>) {
    let mut cx = Cx::new(source, file_name);
    let set = cx.compile(source);
    let failed = cx.sink.has_errors();
    let diagnostics = cx.sink.finish();
    if failed {
        (None, diagnostics)
    } else {
        (set, diagnostics)
    }
}

/// [`check_policy`] on a file; an unreadable file is one error without a position.
pub fn check_policy_file(path: &Path) -> (Option<PolicySet>, Vec<Diagnostic>) {
    let file_name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(source) => check_policy(&source, &file_name),
        Err(e) => (
            None,
            vec![Diagnostic {
                file: file_name,
                line: 0,
                column: 0,
                message: format!("cannot read policy file: {e}"),
                hint: None,
                severity: Severity::Error,
            }],
        ),
    }
}

/// A table of the document with its span and a name for messages (`[[policy.clock]]`).
struct Tbl<'a, 'i> {
    map: &'a DeTable<'i>,
    span: Span,
    what: &'static str,
}

impl<'a, 'i> Tbl<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Val<'i>> {
        self.map
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }
    fn key_span(&self, key: &str) -> Option<Span> {
        self.map
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span())
    }
}

/// `Nx` (a multiple of the clock's target) or a fixed duration.
#[derive(Clone, Copy, Debug)]
enum After {
    Fixed(Dur),
    Times(f64),
}

#[derive(Clone, Debug)]
struct Step {
    after: After,
    written: String,
    notify: Arc<[Role]>,
    span: Span,
}

#[derive(Clone, Debug, Default)]
struct Defaults {
    warn_at: Vec<f64>,
    escalate: Vec<Step>,
}

/// A compiled clock plus what the owner-level checks need.
/// `spec` is `None` when the clock has errors; the rest still takes part in the checks
/// across clocks, so they are reported too.
struct ClockOut {
    spec: Option<ClockSpec>,
    id: Arc<str>,
    id_span: Span,
    after: Option<(String, Span)>,
}

struct Cx<'s> {
    sink: Sink<'s>,
    /// Start offsets of every clock, action and check, sorted: the index is the position.
    positions: Vec<usize>,
    /// Calendar names by id, with where they are defined (`24x7` has no span).
    calendars: Vec<(String, Option<Span>)>,
    defaults: Defaults,
}

impl<'s> Cx<'s> {
    fn new(source: &'s str, file_name: &str) -> Cx<'s> {
        Cx {
            sink: Sink::new(source, file_name),
            positions: Vec::new(),
            calendars: vec![(ALWAYS_OPEN.to_string(), None)],
            defaults: Defaults::default(),
        }
    }

    fn err(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        self.sink.error(span, message.into(), hint);
    }
    fn warn(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        self.sink.warning(span, message.into(), hint);
    }

    fn compile(&mut self, source: &str) -> Option<PolicySet> {
        let (doc, errors) = DeTable::parse_recoverable(source);
        if !errors.is_empty() {
            for e in errors {
                let message = e.message().lines().next().unwrap_or("").trim().to_string();
                self.err(
                    e.span().unwrap_or(0..0),
                    format!("invalid TOML: {message}"),
                    None,
                );
            }
            return None;
        }
        let root = Tbl {
            map: doc.get_ref(),
            span: 0..0,
            what: "the top level",
        };
        self.deny_unknown(&root, ROOT_FIELDS);
        self.collect_positions(&root);

        let mut calendars = vec![Calendar::always_open(ALWAYS_OPEN)];
        for v in self.items(&root, "calendar") {
            if let Some(c) = self.calendar(v) {
                calendars.push(c);
            }
        }
        if let Some(v) = root.get("defaults") {
            if let Some(t) = self.table(v, "[defaults]") {
                self.defaults = self.defaults_table(&t);
            }
        }
        let surge = match root.get("surge") {
            Some(v) => self
                .table(v, "[surge]")
                .map(|t| self.surge(&t))
                .unwrap_or_default(),
            None => SurgeSpec::default(),
        };

        let mut policies: Vec<(Policy, Span, bool)> = Vec::new();
        let mut policy_ids: Vec<Span> = Vec::new();
        let policy_items = self.items(&root, "policy");
        // The catch-all analysis is meaningful only when every policy compiled.
        let mut all_policies_ok = root.get("policy").is_none_or(|v| v.get_ref().is_array());
        for v in policy_items {
            match self.policy(v) {
                Some((p, id_span, selector_ok)) => {
                    all_policies_ok &= selector_ok;
                    policies.push((p, v.span(), selector_ok));
                    policy_ids.push(id_span);
                }
                None => all_policies_ok = false,
            }
        }
        let mut overlays: Vec<(Overlay, Span)> = Vec::new(); // with the id's span
        for v in self.items(&root, "overlay") {
            if let Some(o) = self.overlay(v) {
                overlays.push(o);
            }
        }
        let mut checks: Vec<(Check, Span)> = Vec::new(); // with the id's span
        for v in self.items(&root, "check") {
            if let Some(c) = self.check(v) {
                checks.push(c);
            }
        }

        self.unique_ids(
            "policy",
            policies.iter().map(|(p, _, _)| &*p.id).zip(&policy_ids),
        );
        self.unique_ids("overlay", overlays.iter().map(|(o, s)| (&*o.id, s)));
        self.unique_ids("check", checks.iter().map(|(c, s)| (&*c.id, s)));
        self.reachability(&policies, all_policies_ok);

        Some(PolicySet {
            calendars,
            policies: policies.into_iter().map(|(p, _, _)| p).collect(),
            overlays: overlays.into_iter().map(|(o, _)| o).collect(),
            checks: checks.into_iter().map(|(c, _)| c).collect(),
            surge,
            version: xxhash_rust::xxh3::xxh3_64(source.as_bytes()),
        })
    }

    // ----- positions -------------------------------------------------------------------

    /// Clocks, actions and checks are numbered in document order with one counter.
    fn collect_positions(&mut self, root: &Tbl) {
        fn starts(v: Option<&Val>, out: &mut Vec<usize>, nested: &[&str]) {
            let Some(DeValue::Array(items)) = v.map(|v| v.get_ref()) else {
                return;
            };
            for item in items.iter() {
                match (item.get_ref(), nested.is_empty()) {
                    (_, true) => out.push(item.span().start),
                    (DeValue::Table(t), false) => {
                        for key in nested {
                            let child = t
                                .iter()
                                .find(|(k, _)| k.get_ref().as_ref() == *key)
                                .map(|(_, v)| v);
                            starts(child, out, &[]);
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        starts(root.get("policy"), &mut out, &["clock", "action"]);
        starts(root.get("overlay"), &mut out, &["clock"]);
        starts(root.get("check"), &mut out, &[]);
        out.sort_unstable();
        out.dedup();
        self.positions = out;
    }

    fn position(&self, span: &Span) -> u32 {
        self.positions.partition_point(|&s| s < span.start) as u32
    }

    // ----- generic value access ----------------------------------------------------------

    fn deny_unknown(&mut self, t: &Tbl, allowed: &[&str]) {
        for (k, _) in t.map.iter() {
            let key = k.get_ref().as_ref();
            if !allowed.contains(&key) {
                let listed = format!("allowed fields: {}", join(allowed.iter().copied()));
                let hint = match nearest(key, allowed.iter().copied()) {
                    Some(near) => format!("did you mean \"{near}\"? {listed}"),
                    None => listed,
                };
                self.err(
                    k.span(),
                    format!("unknown field \"{key}\" in {}", t.what),
                    Some(hint),
                );
            }
        }
    }

    fn table<'a, 'i>(&mut self, v: &'a Val<'i>, what: &'static str) -> Option<Tbl<'a, 'i>> {
        match v.get_ref() {
            DeValue::Table(map) => Some(Tbl {
                map,
                span: v.span(),
                what,
            }),
            other => {
                self.err(
                    v.span(),
                    format!("{what} must be a table, found {}", other.type_str()),
                    None,
                );
                None
            }
        }
    }

    /// The elements of an array-of-tables field such as `policy` (`[[policy]]`).
    fn items<'a, 'i>(&mut self, t: &Tbl<'a, 'i>, key: &str) -> &'a [Val<'i>] {
        match t.get(key).map(|v| (v, v.get_ref())) {
            None => &[],
            Some((_, DeValue::Array(items))) => items,
            Some((v, other)) => {
                let hint = if matches!(other, DeValue::Table(_)) {
                    let path = if t.what.starts_with("[[") {
                        format!("{}.{key}", t.what.trim_matches(['[', ']']))
                    } else {
                        key.to_string()
                    };
                    Some(format!("write [[{path}]] (one per entry), not [{path}]"))
                } else {
                    None
                };
                self.err(
                    v.span(),
                    format!(
                        "\"{key}\" must be an array of tables, found {}",
                        other.type_str()
                    ),
                    hint,
                );
                &[]
            }
        }
    }

    /// Whether the table has a key that is a misspelling of `key` (`targt` for `target`):
    /// [`Self::deny_unknown`] reports it with "did you mean", so saying that `key` is missing
    /// too would be a second, misleading error for one typo.
    fn misspelt(t: &Tbl, key: &str) -> bool {
        t.map.iter().any(|(k, _)| {
            let k = k.get_ref().as_ref();
            k != key && nearest(k, [key]).is_some()
        })
    }

    fn require<'a, 'i>(&mut self, t: &Tbl<'a, 'i>, key: &str) -> Option<&'a Val<'i>> {
        let v = t.get(key);
        if v.is_none() && !Self::misspelt(t, key) {
            let example = match key {
                "id" => "id = \"first_response\"",
                "rule" => "rule = \"R1\"",
                "start" => "start = [\"opened\"]",
                "target" => "target = \"5m\" (or every = \"10m\" for a recurring reminder)",
                "name" => "name = \"business-hours\"",
                "tz" => "tz = \"Asia/Shanghai\"",
                "on" => "on = \"opened\"",
                "since" => "since = \"assigned\"",
                "clock" => "clock = \"urgent_notify\"",
                "escalate" => {
                    "escalate = { level = 1, notify = [\"supervisor\"], reason = \"...\" }"
                }
                "notify" => "notify = [\"supervisor\"]",
                "after" => "after = \"1x\"",
                "date" => "date = \"2024-09-29\"",
                "hours" => "hours = [\"09:00-18:00\"]",
                _ => "",
            };
            let hint = (!example.is_empty()).then(|| format!("add {example}"));
            self.err(
                t.span.clone(),
                format!("missing field \"{key}\" in {}", t.what),
                hint,
            );
        }
        v
    }

    fn type_err(&mut self, v: &Val, field: &str, expected: &str, hint: Option<String>) {
        self.err(
            v.span(),
            format!(
                "\"{field}\" must be {expected}, found {}",
                v.get_ref().type_str()
            ),
            hint,
        );
    }

    fn string<'v>(&mut self, v: &'v Val, field: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.type_err(v, field, "a string", None);
                None
            }
        }
    }

    /// A non-empty name (ids, rule ids, reasons).
    fn name(&mut self, v: &Val, field: &str) -> Option<Arc<str>> {
        let s = self.string(v, field)?;
        if s.trim().is_empty() {
            self.err(v.span(), format!("\"{field}\" must not be empty"), None);
            return None;
        }
        Some(s.into())
    }

    fn boolean(&mut self, v: &Val, field: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_err(v, field, "true or false", None);
                None
            }
        }
    }

    fn integer(&mut self, v: &Val, field: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(v.span(), format!("\"{field}\" is out of range"), None);
                    None
                }
            },
            _ => {
                self.type_err(v, field, "an integer", None);
                None
            }
        }
    }

    /// A float; integers are accepted (`3` = `3.0`).
    fn number(&mut self, v: &Val, field: &str) -> Option<f64> {
        match v.get_ref() {
            DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
                Ok(x) if x.is_finite() => Some(x),
                _ => {
                    self.err(
                        v.span(),
                        format!("\"{field}\" must be a finite number"),
                        None,
                    );
                    None
                }
            },
            DeValue::Integer(_) => self.integer(v, field).map(|n| n as f64),
            _ => {
                self.type_err(v, field, "a number", None);
                None
            }
        }
    }

    fn duration(&mut self, v: &Val, field: &str) -> Option<Dur> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.as_ref(),
            DeValue::Integer(i) => {
                let hint = format!(
                    "durations are strings with a unit, e.g. {field} = \"{}s\"",
                    i.as_str()
                );
                self.type_err(v, field, "a duration string", Some(hint));
                return None;
            }
            _ => {
                self.type_err(v, field, "a duration string", Some(DURATION_HINT.into()));
                return None;
            }
        };
        match Dur::parse(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    v.span(),
                    format!("malformed duration for \"{field}\": {e}"),
                    Some(DURATION_HINT.into()),
                );
                None
            }
        }
    }

    /// A duration that must be greater than zero (targets, periods).
    fn positive_duration(&mut self, v: &Val, field: &str) -> Option<Dur> {
        let d = self.duration(v, field)?;
        if d <= Dur::ZERO {
            self.err(
                v.span(),
                format!("\"{field}\" must be greater than zero"),
                Some(format!("give a positive duration, e.g. {field} = \"5m\"")),
            );
            return None;
        }
        Some(d)
    }

    /// A string or a list of strings, each with its span.
    fn strings<'v>(&mut self, v: &'v Val, field: &str) -> Option<Vec<(&'v str, Span)>> {
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.as_ref(), v.span())]),
            DeValue::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.as_ref(), item.span())),
                        _ => {
                            self.type_err(item, field, "a string", None);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => {
                self.type_err(v, field, "a string or a list of strings", None);
                None
            }
        }
    }

    /// A string or list of strings, each looked up in `table`; an empty list is an error
    /// unless `allow_empty`.
    fn enum_list<T: Copy + PartialEq>(
        &mut self,
        v: &Val,
        field: &str,
        table: &[(T, &str)],
        what: &str,
        listing: &str,
        allow_empty: bool,
    ) -> Option<Vec<T>> {
        let names = self.strings(v, field)?;
        if names.is_empty() && !allow_empty {
            self.err(
                v.span(),
                format!("\"{field}\" must not be an empty list"),
                Some(format!("omit \"{field}\" or list at least one value")),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (name, span) in names {
            match table.iter().find(|(_, n)| *n == name) {
                Some((t, _)) => {
                    if !out.contains(t) {
                        out.push(*t);
                    }
                }
                None => {
                    let hint = suggest(name, table.iter().map(|(_, n)| *n), listing);
                    self.err(span, format!("unknown {what} \"{name}\""), Some(hint));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn matcher(&mut self, name: &str, span: Span) -> Option<Matcher> {
        if let Some(m) = Matcher::parse(name) {
            return Some(m);
        }
        for prefix in ["escalated:", "escalation_answered:"] {
            if let Some(role) = name.strip_prefix(prefix) {
                if Role::ALL.iter().all(|r| r.as_str() != role) {
                    let hint = suggest(role, role_names(), "roles are");
                    self.err(
                        span,
                        format!("unknown role \"{role}\" in matcher \"{name}\""),
                        Some(hint),
                    );
                    return None;
                }
            }
        }
        let hint = suggest(name, Matcher::ALL.iter().map(|(_, n)| *n), "matchers are");
        self.err(span, format!("unknown matcher \"{name}\""), Some(hint));
        None
    }

    /// A matcher or a list of matchers; empty lists are refused when `required`.
    fn matchers(&mut self, v: &Val, field: &str, required: bool) -> Option<MatcherSet> {
        let names = self.strings(v, field)?;
        if names.is_empty() && required {
            self.err(
                v.span(),
                format!("\"{field}\" needs at least one matcher"),
                Some(format!("e.g. {field} = [\"opened\"]")),
            );
            return None;
        }
        let mut set = MatcherSet::EMPTY;
        let mut ok = true;
        for (name, span) in names {
            match self.matcher(name, span) {
                Some(m) => set.0 |= m.bit(),
                None => ok = false,
            }
        }
        ok.then_some(set)
    }

    /// Roles to notify: a role or a non-empty list of roles.
    fn roles(&mut self, v: &Val, field: &str) -> Option<Arc<[Role]>> {
        let table: Vec<(Role, &str)> = Role::ALL.iter().map(|r| (*r, r.as_str())).collect();
        let roles = self.enum_list(v, field, &table, "role", "roles are", true)?;
        if roles.is_empty() {
            self.err(
                v.span(),
                format!("\"{field}\" must name at least one role"),
                Some(format!("e.g. {field} = [\"supervisor\"]")),
            );
            return None;
        }
        Some(roles.into())
    }

    /// Warning fractions: a number or a list, each in (0, 1), strictly ascending.
    fn warn_at(&mut self, v: &Val) -> Option<Vec<f64>> {
        let items: Vec<&Val> = match v.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            DeValue::Float(_) | DeValue::Integer(_) => vec![v],
            _ => {
                self.type_err(v, "warn_at", "a list of fractions", None);
                return None;
            }
        };
        let mut out: Vec<f64> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(f) = self.number(item, "warn_at") else {
                ok = false;
                continue;
            };
            if !(f > 0.0 && f < 1.0) {
                self.err(
                    item.span(),
                    format!("warn_at fraction {f} is outside (0, 1)"),
                    Some(
                        "warnings fire at a fraction of the target, e.g. warn_at = [0.5, 0.8]"
                            .into(),
                    ),
                );
                ok = false;
            } else if let Some(&prev) = out.last() {
                if f <= prev {
                    self.err(
                        item.span(),
                        format!("warn_at fractions must be ascending: {f} comes after {prev}"),
                        Some("list each fraction once, smallest first, e.g. [0.5, 0.8]".into()),
                    );
                    ok = false;
                }
            }
            out.push(f);
        }
        ok.then_some(out)
    }

    /// An escalation ladder: a list of `{ after, notify }` tables.
    fn ladder(&mut self, v: &Val) -> Option<Vec<Step>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.type_err(
                v,
                "escalate",
                "a list of { after, notify } tables",
                Some("e.g. escalate = [{ after = \"0x\", notify = \"team_lead\" }]".into()),
            );
            return None;
        };
        let mut steps = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            let Some(t) = self.table(item, "an escalation step") else {
                ok = false;
                continue;
            };
            self.deny_unknown(&t, STEP_FIELDS);
            let after = self.require(&t, "after").and_then(|a| self.step_after(a));
            let notify = match t.get("notify") {
                Some(n) => self.roles(n, "notify"),
                None => {
                    self.err(
                        t.span.clone(),
                        "escalation step has no \"notify\": it would tell no one",
                        Some("add notify = [\"supervisor\"] (agent, team_lead, supervisor, department_head)".into()),
                    );
                    None
                }
            };
            match (after, notify) {
                (Some((after, written, span)), Some(notify)) => steps.push(Step {
                    after,
                    written,
                    notify,
                    span,
                }),
                _ => ok = false,
            }
        }
        // Neighbours of the same form compare without a target; mixed ones ("5m" then "1x")
        // are compared per clock in `resolve_ladder`.
        for i in 1..steps.len() {
            let (prev, step) = (&steps[i - 1], &steps[i]);
            let increasing = match (prev.after, step.after) {
                (After::Fixed(a), After::Fixed(b)) => b > a,
                (After::Times(a), After::Times(b)) => b > a,
                _ => continue,
            };
            if !increasing {
                self.ladder_err(
                    step,
                    i,
                    format!("\"{}\"", step.written),
                    format!("\"{}\"", prev.written),
                );
                ok = false;
            }
        }
        ok.then_some(steps)
    }

    /// A ladder step's `after`: `"Nx"` (N × target, N may be fractional) or a duration.
    fn step_after(&mut self, v: &Val) -> Option<(After, String, Span)> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.as_ref(),
            _ => {
                self.type_err(
                    v,
                    "after",
                    "a duration or a multiple of the target",
                    Some("e.g. after = \"5m\" or after = \"1x\"".into()),
                );
                return None;
            }
        };
        if let Some(n) = s.strip_suffix('x') {
            let valid = !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit() || c == '.')
                && !n.starts_with('.');
            return match n.parse::<f64>() {
                Ok(f) if valid && f.is_finite() => Some((After::Times(f), s.to_string(), v.span())),
                _ => {
                    self.err(
                        v.span(),
                        format!("malformed multiple of the target \"{s}\""),
                        Some("write a multiple as \"1x\", \"3x\" or \"0.5x\", or a duration like \"5m\"".into()),
                    );
                    None
                }
            };
        }
        let d = self.duration(v, "after")?;
        Some((After::Fixed(d), s.to_string(), v.span()))
    }

    /// Resolves a ladder against a clock's target and checks it is strictly increasing.
    fn resolve_ladder(&mut self, steps: &[Step], target: Dur) -> Vec<EscalationStep> {
        let mut out: Vec<EscalationStep> = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let after = match step.after {
                After::Fixed(d) => d,
                After::Times(f) => target.mul_f64(f),
            };
            let mixed = i > 0
                && matches!(
                    (steps[i - 1].after, step.after),
                    (After::Fixed(_), After::Times(_)) | (After::Times(_), After::Fixed(_))
                );
            if let (true, Some(prev)) = (mixed, out.last()) {
                if after <= prev.after {
                    let show = |s: &Step, d: Dur| match s.after {
                        After::Fixed(_) => format!("\"{}\"", s.written),
                        After::Times(_) => format!("\"{}\" = {d} for a {target} target", s.written),
                    };
                    let (now, before) = (show(step, after), show(&steps[i - 1], prev.after));
                    self.ladder_err(step, i, now, before);
                }
            }
            out.push(EscalationStep {
                after,
                notify: step.notify.clone(),
            });
        }
        out
    }

    /// Step `i` (0-based) of a ladder does not come after step `i - 1`.
    fn ladder_err(&mut self, step: &Step, i: usize, now: String, before: String) {
        let message = format!(
            "escalation steps must be strictly increasing in \"after\": step {} ({now}) is not \
             after step {i} ({before})",
            i + 1
        );
        self.err(
            step.span.clone(),
            message,
            Some(
                "order the steps by time past the deadline, each later than the one before".into(),
            ),
        );
    }

    // ----- [defaults] and [surge] ------------------------------------------------------------

    fn defaults_table(&mut self, t: &Tbl) -> Defaults {
        self.deny_unknown(t, DEFAULTS_FIELDS);
        Defaults {
            warn_at: t
                .get("warn_at")
                .and_then(|v| self.warn_at(v))
                .unwrap_or_default(),
            escalate: t
                .get("escalate")
                .and_then(|v| self.ladder(v))
                .unwrap_or_default(),
        }
    }

    fn surge(&mut self, t: &Tbl) -> SurgeSpec {
        self.deny_unknown(t, SURGE_FIELDS);
        let mut s = SurgeSpec::default();
        if let Some(b) = t.get("enabled").and_then(|v| self.boolean(v, "enabled")) {
            s.enabled = b;
        }
        for (field, slot) in [("window", &mut s.window), ("baseline", &mut s.baseline)] {
            if let Some(v) = t.get(field) {
                if let Some(d) = self.positive_duration(v, field) {
                    if d.0 % Dur::from_secs(60).0 != 0 {
                        self.err(
                            v.span(),
                            format!("surge \"{field}\" must be a whole number of minutes"),
                            Some("surge counts tickets in minute buckets, e.g. \"5m\"".into()),
                        );
                    }
                    *slot = d;
                }
            }
        }
        for (field, slot) in [
            ("start_ratio", &mut s.start_ratio),
            ("end_ratio", &mut s.end_ratio),
            ("baseline_floor_per_min", &mut s.baseline_floor_per_min),
        ] {
            if let Some(v) = t.get(field) {
                if let Some(f) = self.number(v, field) {
                    if f <= 0.0 {
                        self.err(
                            v.span(),
                            format!("\"{field}\" must be greater than zero"),
                            None,
                        );
                    }
                    *slot = f;
                }
            }
        }
        if let Some(v) = t.get("min_tickets") {
            if let Some(n) = self.integer(v, "min_tickets") {
                match u32::try_from(n) {
                    Ok(n) => s.min_tickets = n,
                    Err(_) => self.err(
                        v.span(),
                        "\"min_tickets\" must be between 0 and 4294967295",
                        None,
                    ),
                }
            }
        }
        if s.end_ratio > s.start_ratio {
            let span = t.key_span("end_ratio").unwrap_or(t.span.clone());
            self.err(
                span,
                format!(
                    "surge end_ratio {} is above start_ratio {}: a surge would end before it starts",
                    s.end_ratio, s.start_ratio
                ),
                Some("keep end_ratio <= start_ratio (defaults 1.5 and 3)".into()),
            );
        }
        s
    }

    // ----- calendars ---------------------------------------------------------------------

    fn calendar(&mut self, v: &Val) -> Option<Calendar> {
        let t = self.table(v, "[[calendar]]")?;
        self.deny_unknown(&t, CALENDAR_FIELDS);
        let name_v = self.require(&t, "name");
        let name = name_v.and_then(|n| self.name(n, "name"));
        let mut ok = name.is_some();
        if let (Some(n), Some(nv)) = (&name, name_v) {
            if &**n == ALWAYS_OPEN {
                self.err(
                    nv.span(),
                    "calendar \"24x7\" is built in and cannot be redefined",
                    Some(
                        "use calendar = \"24x7\" directly, or give this calendar another name"
                            .into(),
                    ),
                );
                ok = false;
            } else if let Some((_, Some(first))) = self.calendars.iter().find(|(c, _)| **c == **n) {
                let line = self.sink.line_of(first);
                self.err(
                    nv.span(),
                    format!("duplicate calendar \"{n}\""),
                    Some(format!(
                        "first defined at line {line}; calendar names must be unique"
                    )),
                );
                ok = false;
            }
        }
        // Registered as soon as the name is good, so clocks naming a calendar that has other
        // errors do not also report it as unknown.
        let registered = ok;
        if let (true, Some(n)) = (registered, &name) {
            self.calendars.push((n.to_string(), Some(v.span())));
        }
        let tz = self.require(&t, "tz").and_then(|v| self.time_zone(v));
        ok &= tz.is_some();

        let mut weekly: [Vec<LocalInterval>; 7] = Default::default();
        if let Some(v) = t.get("daily") {
            match self.intervals(v, "daily") {
                Some(iv) => weekly.iter_mut().for_each(|d| *d = iv.clone()),
                None => ok = false,
            }
        }
        if let Some(v) = t.get("hours") {
            if let Some(h) = self.table(v, "the \"hours\" table") {
                for (k, dv) in h.map.iter() {
                    let day = k.get_ref().as_ref();
                    match DAYS.iter().position(|d| *d == day) {
                        Some(i) => match self.intervals(dv, day) {
                            Some(iv) => weekly[i] = iv,
                            None => ok = false,
                        },
                        None => {
                            let hint = suggest(day, DAYS.iter().copied(), "days are");
                            self.err(
                                k.span(),
                                format!("unknown day \"{day}\" in hours"),
                                Some(hint),
                            );
                            ok = false;
                        }
                    }
                }
            } else {
                ok = false;
            }
        }
        let has_weekly = weekly.iter().any(|d| !d.is_empty());
        if ok && !has_weekly && t.get("daily").is_none() && t.get("hours").is_none() {
            self.err(
                t.span.clone(),
                format!(
                    "calendar \"{}\" has no weekly hours",
                    name.as_deref().unwrap_or("")
                ),
                Some(
                    "add daily = [\"09:00-18:00\"] or hours = { mon = [\"09:00-18:00\"], ... }"
                        .into(),
                ),
            );
            ok = false;
        } else if ok && !has_weekly {
            self.err(
                t.span.clone(),
                format!(
                    "calendar \"{}\" is closed every day of the week: its clocks would never run",
                    name.as_deref().unwrap_or("")
                ),
                Some("give at least one day open hours".into()),
            );
            ok = false;
        }

        // (date, span of its entry, listed as part of a range)
        let mut holidays: Vec<(NaiveDate, Span, bool)> = Vec::new();
        if let Some(v) = t.get("holidays") {
            ok &= self.holidays(v, &mut holidays);
        }
        let mut special: Vec<(NaiveDate, Vec<LocalInterval>, Span)> = Vec::new();
        for item in self.items(&t, "special") {
            let Some(st) = self.table(item, "[[calendar.special]]") else {
                ok = false;
                continue;
            };
            self.deny_unknown(&st, SPECIAL_FIELDS);
            let date = self
                .require(&st, "date")
                .and_then(|d| self.date(d).map(|date| (date, d.span())));
            let hours = self
                .require(&st, "hours")
                .and_then(|h| self.intervals(h, "hours"));
            let (Some((date, span)), Some(hours)) = (date, hours) else {
                ok = false;
                continue;
            };
            if let Some((_, _, first)) = special.iter().find(|(d, _, _)| *d == date) {
                let line = self.sink.line_of(first);
                self.err(
                    span,
                    format!("special date {date} is listed twice"),
                    Some(format!(
                        "first listed at line {line}; merge the hours into one entry"
                    )),
                );
                ok = false;
                continue;
            }
            // A special date inside a holiday range is what special dates are for (an adjusted
            // working day within a closed week: special > holiday); the same date listed as a
            // single holiday and as a special date contradicts itself.
            if let Some((_, hspan, _)) = holidays.iter().find(|(d, _, range)| *d == date && !range)
            {
                let line = self.sink.line_of(hspan);
                self.err(
                    span,
                    format!("{date} is both a holiday and a special date"),
                    Some(format!(
                        "the holiday entry is at line {line}; a date is either closed (holidays) or \
                         has its own hours (special) — remove one"
                    )),
                );
                ok = false;
                continue;
            }
            special.push((date, hours, span));
        }

        let name = name?;
        if !ok {
            // A placeholder keeps calendar ids aligned; the set is discarded anyway.
            return registered.then(|| Calendar::always_open(&name));
        }
        let mut holidays: Vec<NaiveDate> = holidays.into_iter().map(|(d, _, _)| d).collect();
        holidays.sort_unstable();
        special.sort_by_key(|(d, _, _)| *d);
        Some(Calendar::business(
            &name,
            tz?,
            weekly,
            holidays,
            special.into_iter().map(|(d, h, _)| (d, h)).collect(),
        ))
    }

    fn time_zone(&mut self, v: &Val) -> Option<Tz> {
        let s = self.string(v, "tz")?;
        match s.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
                let hint = match nearest(s, names) {
                    Some(n) => format!("did you mean \"{n}\"?"),
                    None => {
                        "use an IANA time zone name such as \"Asia/Shanghai\" or \"UTC\"".into()
                    }
                };
                self.err(v.span(), format!("unknown time zone \"{s}\""), Some(hint));
                None
            }
        }
    }

    /// A list of `HH:MM-HH:MM` intervals (or one), merged where they overlap or touch.
    fn intervals(&mut self, v: &Val, field: &str) -> Option<Vec<LocalInterval>> {
        let items = self.strings(v, field)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (s, span) in items {
            match parse_interval(s) {
                Ok(iv) => out.push(iv),
                Err(why) => {
                    self.err(
                        span,
                        format!("bad hours \"{s}\": {why}"),
                        Some(HOURS_HINT.into()),
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| merge_intervals(out))
    }

    fn date(&mut self, v: &Val) -> Option<NaiveDate> {
        match v.get_ref() {
            DeValue::String(s) => match parse_date(s) {
                Some(d) => Some(d),
                None => {
                    self.err(
                        v.span(),
                        format!("bad date \"{s}\""),
                        Some("write dates as \"YYYY-MM-DD\"".into()),
                    );
                    None
                }
            },
            DeValue::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
                (Some(d), None, None) => {
                    NaiveDate::from_ymd_opt(d.year as i32, d.month as u32, d.day as u32)
                }
                _ => {
                    self.err(
                        v.span(),
                        "expected a date without a time",
                        Some("write dates as \"YYYY-MM-DD\"".into()),
                    );
                    None
                }
            },
            _ => {
                self.type_err(v, "date", "a date (\"YYYY-MM-DD\")", None);
                None
            }
        }
    }

    /// Holiday dates and inclusive ranges `"A..B"`; duplicates and overlaps are errors.
    fn holidays(&mut self, v: &Val, out: &mut Vec<(NaiveDate, Span, bool)>) -> bool {
        let items: Vec<&Val> = match v.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            _ => vec![v],
        };
        let mut ok = true;
        for item in items {
            let (from, to) = match item.get_ref() {
                DeValue::String(s) if s.contains("..") => {
                    let (a, b) = s.split_once("..").unwrap_or_default();
                    match (parse_date(a), parse_date(b)) {
                        (Some(a), Some(b)) if a <= b && (b - a).num_days() <= 3660 => (a, b),
                        (Some(a), Some(b)) if a > b => {
                            self.err(
                                item.span(),
                                format!("holiday range \"{s}\" ends before it starts"),
                                Some("write ranges as \"FIRST..LAST\", both inclusive".into()),
                            );
                            ok = false;
                            continue;
                        }
                        _ => {
                            self.err(
                                item.span(),
                                format!("bad holiday range \"{s}\""),
                                Some("write ranges as \"YYYY-MM-DD..YYYY-MM-DD\" (inclusive, at most 10 years)".into()),
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
                _ => match self.date(item) {
                    Some(d) => (d, d),
                    None => {
                        ok = false;
                        continue;
                    }
                },
            };
            let dup = out.iter().find(|(d, _, _)| *d >= from && *d <= to).cloned();
            if let Some((d, first, _)) = dup {
                let line = self.sink.line_of(&first);
                self.err(
                    item.span(),
                    format!("holiday {d} is listed twice (overlapping holiday entries)"),
                    Some(format!(
                        "already listed at line {line}; remove the duplicate or shorten the range"
                    )),
                );
                ok = false;
                continue;
            }
            let range = from != to;
            for d in from.iter_days().take_while(|d| *d <= to) {
                out.push((d, item.span(), range));
            }
        }
        ok
    }

    fn calendar_ref(&mut self, v: &Val) -> Option<CalendarId> {
        let name = self.string(v, "calendar")?;
        if let Some(i) = self.calendars.iter().position(|(n, _)| n == name) {
            return Some(CalendarId(i as u16));
        }
        let defined = format!(
            "defined calendars: {}",
            join(self.calendars.iter().map(|(n, _)| n.as_str()))
        );
        let hint = match nearest(name, self.calendars.iter().map(|(n, _)| n.as_str())) {
            Some(n) => format!("did you mean \"{n}\"? {defined}"),
            None => defined,
        };
        self.err(v.span(), format!("unknown calendar \"{name}\""), Some(hint));
        None
    }

    // ----- policies, overlays, checks -----------------------------------------------------

    /// The selector fields of a policy or overlay; the flag is false when one was invalid.
    fn selector(&mut self, t: &Tbl) -> (Selector, bool) {
        let mut sel = Selector::default();
        let mut ok = true;
        for field in SELECTOR_FIELDS {
            let Some(v) = t.get(field) else { continue };
            let good = match *field {
                "channel" => {
                    let table = named(
                        std::iter::once(Channel::Unspecified).chain(Channel::ALL.iter().copied()),
                        Channel::as_str,
                    );
                    sel.channel =
                        self.enum_list(v, field, &table, "channel", "channels are", false);
                    sel.channel.is_some()
                }
                "category" => {
                    let table = named(
                        std::iter::once(Category::Unspecified).chain(Category::ALL.iter().copied()),
                        Category::as_str,
                    );
                    sel.category =
                        self.enum_list(v, field, &table, "category", "categories are", false);
                    sel.category.is_some()
                }
                "urgency" => {
                    // Unspecified urgency matches as `general`, so it is not offered.
                    let table = named(Urgency::ALL.iter().copied(), Urgency::as_str);
                    sel.urgency =
                        self.enum_list(v, field, &table, "urgency", "urgencies are", false);
                    sel.urgency.is_some()
                }
                "tier" => {
                    let table = named(Tier::ALL.iter().copied(), Tier::as_str);
                    sel.tier = self.enum_list(v, field, &table, "tier", "tiers are", false);
                    sel.tier.is_some()
                }
                _ => {
                    let list = self.strings(v, field).and_then(|names| {
                        if names.is_empty() {
                            self.err(
                                v.span(),
                                format!("\"{field}\" must not be an empty list"),
                                Some(format!("omit \"{field}\" to match any {field}")),
                            );
                            return None;
                        }
                        Some(names.into_iter().map(|(n, _)| n.to_string()).collect())
                    });
                    let good = list.is_some();
                    if *field == "tenant" {
                        sel.tenant = list;
                    } else {
                        sel.team = list;
                    }
                    good
                }
            };
            if !good {
                // An invalid field never matches, so no false "catch-all" conclusions.
                ok = false;
            }
        }
        (sel, ok)
    }

    /// A policy, the span of its id, and whether its selector was valid.
    fn policy(&mut self, v: &Val) -> Option<(Policy, Span, bool)> {
        let t = self.table(v, "[[policy]]")?;
        self.deny_unknown(&t, POLICY_FIELDS);
        let id_v = self.require(&t, "id");
        let id = id_v.and_then(|v| self.name(v, "id"));
        let (selector, selector_ok) = self.selector(&t);
        let (clocks, clock_ids) = self.clock_list(&t, "[[policy.clock]]");
        let mut actions = Vec::new();
        for item in self.items(&t, "action") {
            if let Some(a) = self.action(item) {
                actions.push(a);
            }
        }
        for (a, span) in &actions {
            if clock_ids.contains(&a.clock) {
                self.err(
                    span.clone(),
                    format!(
                        "action clock \"{}\" has the name of a clock of this policy",
                        a.clock
                    ),
                    Some(
                        "give the action's output its own clock name, e.g. \"urgent_notify\""
                            .into(),
                    ),
                );
            }
        }
        let policy = Policy {
            id: id?,
            selector,
            clocks,
            actions: actions.into_iter().map(|(a, _)| a).collect(),
        };
        Some((policy, id_v.map_or(v.span(), |i| i.span()), selector_ok))
    }

    fn overlay(&mut self, v: &Val) -> Option<(Overlay, Span)> {
        let t = self.table(v, "[[overlay]]")?;
        self.deny_unknown(&t, OVERLAY_FIELDS);
        let id_v = self.require(&t, "id");
        let id = id_v.and_then(|v| self.name(v, "id"));
        let (selector, _) = self.selector(&t);
        let (clocks, _) = self.clock_list(&t, "[[overlay.clock]]");
        if t.get("clock").is_none() {
            self.warn(
                t.span.clone(),
                format!("overlay \"{}\" adds no clocks", id.as_deref().unwrap_or("")),
                Some("add [[overlay.clock]] entries or remove the overlay".into()),
            );
        }
        Some((
            Overlay {
                id: id?,
                selector,
                clocks,
            },
            id_v.map_or(v.span(), |i| i.span()),
        ))
    }

    fn check(&mut self, v: &Val) -> Option<(Check, Span)> {
        let t = self.table(v, "[[check]]")?;
        self.deny_unknown(&t, CHECK_FIELDS);
        let id_v = self.require(&t, "id");
        let id = id_v.and_then(|v| self.name(v, "id"));
        let rule = self.require(&t, "rule").and_then(|v| self.name(v, "rule"));
        let on = self
            .require(&t, "on")
            .and_then(|v| self.matchers(v, "on", true));
        let since = self
            .require(&t, "since")
            .and_then(|v| self.matchers(v, "since", true));
        let target = self
            .require(&t, "target")
            .and_then(|v| self.positive_duration(v, "target"));
        Some((
            Check {
                id: id?,
                rule: rule?,
                on: on?,
                since: since?,
                target: target?,
                position: self.position(&v.span()),
            },
            id_v.map_or(v.span(), |i| i.span()),
        ))
    }

    fn action(&mut self, v: &Val) -> Option<(ActionSpec, Span)> {
        let t = self.table(v, "[[policy.action]]")?;
        self.deny_unknown(&t, ACTION_FIELDS);
        let on = self
            .require(&t, "on")
            .and_then(|v| self.matchers(v, "on", true));
        let rule = self.require(&t, "rule").and_then(|v| self.name(v, "rule"));
        let clock = self
            .require(&t, "clock")
            .and_then(|v| self.name(v, "clock"));
        let esc = self
            .require(&t, "escalate")
            .and_then(|e| self.table(e, "the action's escalate table"));
        let (mut level, mut notify, mut reason, mut esc_ok) = (1u32, None, None, esc.is_some());
        if let Some(e) = &esc {
            self.deny_unknown(e, ACTION_ESCALATE_FIELDS);
            if let Some(lv) = e.get("level") {
                match self.integer(lv, "level") {
                    Some(n) if (1..=u32::MAX as i64).contains(&n) => level = n as u32,
                    Some(_) => {
                        self.err(
                            lv.span(),
                            "\"level\" must be 1 or more",
                            Some("level 1 is the first escalation".into()),
                        );
                        esc_ok = false;
                    }
                    None => esc_ok = false,
                }
            }
            match e.get("notify") {
                Some(n) => {
                    notify = self.roles(n, "notify");
                    esc_ok &= notify.is_some();
                }
                None => {
                    self.err(
                        e.span.clone(),
                        "action has no \"notify\": its escalation would tell no one",
                        Some("add notify = [\"supervisor\"] to the escalate table (agent, team_lead, supervisor, department_head)".into()),
                    );
                    esc_ok = false;
                }
            }
            if let Some(r) = e.get("reason") {
                reason = self.name(r, "reason");
                esc_ok &= reason.is_some();
            }
        }
        if !esc_ok {
            return None;
        }
        let clock = clock?;
        Some((
            ActionSpec {
                on: on?,
                level,
                notify: notify?,
                reason: reason.unwrap_or_else(|| clock.clone()),
                rule: rule?,
                clock,
                position: self.position(&v.span()),
            },
            v.span(),
        ))
    }

    /// The clocks of a policy or overlay, with the checks that span them: unique ids,
    /// `after` naming an existing other clock, no cycles of `after`.
    fn clock_list(&mut self, t: &Tbl, what: &'static str) -> (Vec<ClockSpec>, Vec<Arc<str>>) {
        let mut outs: Vec<ClockOut> = Vec::new();
        for item in self.items(t, "clock") {
            if let Some(c) = self.clock(item, what) {
                outs.push(c);
            }
        }
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut dups = Vec::new();
        for c in &outs {
            if let Some(first) = seen.get(&*c.id) {
                dups.push((c.id_span.clone(), c.id.to_string(), first.clone()));
            } else {
                seen.insert(&c.id, c.id_span.clone());
            }
        }
        for (span, id, first) in dups {
            let line = self.sink.line_of(&first);
            self.err(
                span,
                format!("duplicate clock id \"{id}\""),
                Some(format!("first defined at line {line}; clock ids must be unique within a policy or overlay")),
            );
        }
        let ids: Vec<String> = outs.iter().map(|c| c.id.to_string()).collect();
        for c in &outs {
            let Some((after, span)) = &c.after else {
                continue;
            };
            if *after == *c.id {
                self.err(
                    span.clone(),
                    format!("clock \"{after}\" waits for itself (after = \"{after}\")"),
                    Some("\"after\" names another clock of the same policy, e.g. after = \"first_response\"".into()),
                );
            } else if !ids.iter().any(|i| i == after) {
                let defined = format!("clocks here: {}", join(ids.iter().map(String::as_str)));
                let hint = match nearest(after, ids.iter().map(String::as_str)) {
                    Some(n) => format!("did you mean \"{n}\"? {defined}"),
                    None => defined,
                };
                self.err(
                    span.clone(),
                    format!("\"after\" names an unknown clock \"{after}\""),
                    Some(hint),
                );
            }
        }
        // Cycles: follow `after` links from each clock; report once per cycle, at its first
        // member in file order.
        let next = |id: &str| {
            outs.iter()
                .find(|c| &*c.id == id)
                .and_then(|c| c.after.as_ref().map(|(a, _)| a.as_str()))
        };
        let mut reported: Vec<String> = Vec::new();
        for c in &outs {
            let mut path: Vec<&str> = vec![&c.id];
            let mut cur: &str = &c.id;
            while let Some(n) = next(cur) {
                if n == cur || !ids.iter().any(|i| i == n) {
                    break;
                }
                if let Some(i) = path.iter().position(|p| *p == n) {
                    if i == 0 && !reported.iter().any(|r| path.contains(&r.as_str())) {
                        let mut cycle = path.join(" → ");
                        cycle.push_str(&format!(" → {n}"));
                        let span = c
                            .after
                            .as_ref()
                            .map(|(_, s)| s.clone())
                            .unwrap_or(c.id_span.clone());
                        self.err(
                            span,
                            format!("clocks wait for each other in a cycle: {cycle}"),
                            Some("none of them could ever start; remove one \"after\"".into()),
                        );
                        reported.push(c.id.to_string());
                    }
                    break;
                }
                path.push(n);
                cur = n;
            }
        }
        let ids = outs.iter().map(|c| c.id.clone()).collect();
        (outs.into_iter().filter_map(|c| c.spec).collect(), ids)
    }

    fn clock(&mut self, v: &Val, what: &'static str) -> Option<ClockOut> {
        let t = self.table(v, what)?;
        self.deny_unknown(&t, CLOCK_FIELDS);
        let mut ok = true;
        let id_v = self.require(&t, "id");
        let id = id_v.and_then(|v| self.name(v, "id"));
        let rule = self.require(&t, "rule").and_then(|v| self.name(v, "rule"));
        let start = self
            .require(&t, "start")
            .and_then(|v| self.matchers(v, "start", true));
        let mut opt_set = |cx: &mut Self, field: &str| match t.get(field) {
            None => MatcherSet::EMPTY,
            Some(v) => cx.matchers(v, field, false).unwrap_or_else(|| {
                ok = false;
                MatcherSet::EMPTY
            }),
        };
        let stop = opt_set(self, "stop");
        let pause = opt_set(self, "pause");
        let resume = opt_set(self, "resume");
        let end = opt_set(self, "end");
        let mut opt_bool = |cx: &mut Self, field: &str| match t.get(field) {
            None => false,
            Some(v) => cx.boolean(v, field).unwrap_or_else(|| {
                ok = false;
                false
            }),
        };
        let once = opt_bool(self, "once");
        let survives_close = opt_bool(self, "survives_close");
        let follow_up = opt_bool(self, "follow_up");

        let after = match t.get("after") {
            None => None,
            Some(v) => match self.name(v, "after") {
                Some(a) => Some((a.to_string(), v.span())),
                None => {
                    ok = false;
                    None
                }
            },
        };
        let phases = match t.get("phases") {
            None => PhaseSet::DEFAULT,
            Some(v) => self.phases(v).unwrap_or_else(|| {
                ok = false;
                PhaseSet::DEFAULT
            }),
        };
        let paused_in = match t.get("paused_in") {
            None => PhaseSet::EMPTY,
            Some(v) => self.paused_in(v).unwrap_or_else(|| {
                ok = false;
                PhaseSet::EMPTY
            }),
        };
        let metric = match t.get("metric") {
            None => None,
            Some(v) => self.metric(v).or_else(|| {
                ok = false;
                None
            }),
        };
        let on_reopen = match t.get("on_reopen") {
            None => OnReopen::Keep,
            Some(v) => match self.string(v, "on_reopen") {
                Some("keep") => OnReopen::Keep,
                Some("restart") => OnReopen::Restart,
                Some(other) => {
                    let hint = suggest(other, ["keep", "restart"], "on_reopen is one of");
                    self.err(
                        v.span(),
                        format!("unknown on_reopen \"{other}\""),
                        Some(hint),
                    );
                    ok = false;
                    OnReopen::Keep
                }
                None => {
                    ok = false;
                    OnReopen::Keep
                }
            },
        };
        let calendar = match t.get("calendar") {
            None => CalendarId(0),
            Some(v) => self.calendar_ref(v).unwrap_or_else(|| {
                ok = false;
                CalendarId(0)
            }),
        };
        let every = t
            .get("every")
            .map(|v| (v, self.positive_duration(v, "every")));
        let target = t
            .get("target")
            .map(|v| (v, self.positive_duration(v, "target")));
        let own_warn = t.get("warn_at").map(|v| (v, self.warn_at(v)));
        let own_ladder = t.get("escalate").map(|v| (v, self.ladder(v)));
        let label = id.as_deref().unwrap_or("").to_string();

        let (kind, target, warn_at, escalate) = match every {
            Some((_, every)) => {
                if target.is_some() {
                    let span = t.key_span("target").unwrap_or(t.span.clone());
                    self.err(
                        span,
                        format!("recurring clock \"{label}\" has both \"every\" and \"target\""),
                        Some("a recurring clock's period is \"every\"; remove \"target\"".into()),
                    );
                    ok = false;
                }
                let warns = own_warn
                    .as_ref()
                    .is_some_and(|(_, w)| w.as_ref().is_none_or(|w| !w.is_empty()));
                let ladders = own_ladder
                    .as_ref()
                    .is_some_and(|(_, l)| l.as_ref().is_none_or(|l| !l.is_empty()));
                for (field, present) in [("warn_at", warns), ("escalate", ladders)] {
                    if present {
                        let span = t.key_span(field).unwrap_or(t.span.clone());
                        self.err(
                            span,
                            format!(
                                "recurring clock \"{label}\" cannot have \"{field}\": reminders never breach or escalate"
                            ),
                            Some(format!(
                                "remove \"{field}\", or remove \"every\" to make it a deadline clock with a target"
                            )),
                        );
                        ok = false;
                    }
                }
                let every = every.unwrap_or_else(|| {
                    ok = false;
                    Dur::from_secs(1)
                });
                (
                    ClockKind::Recurring { every, end },
                    every,
                    Vec::new(),
                    Vec::new(),
                )
            }
            None => {
                if t.get("end").is_some() {
                    let span = t.key_span("end").unwrap_or(t.span.clone());
                    self.err(
                        span,
                        format!("\"end\" only applies to recurring clocks, and \"{label}\" has no \"every\""),
                        Some("set every = \"10m\" to make it recurring, or use \"stop\" for a deadline clock".into()),
                    );
                    ok = false;
                }
                let target = match target {
                    Some((_, Some(d))) => d,
                    Some((_, None)) => {
                        ok = false;
                        Dur::from_secs(1)
                    }
                    None => {
                        self.require(&t, "target");
                        ok = false;
                        Dur::from_secs(1)
                    }
                };
                if t.get("stop").is_none() && !Self::misspelt(&t, "stop") {
                    self.err(
                        t.span.clone(),
                        format!("clock \"{label}\" has no \"stop\": nothing could meet its target"),
                        Some(
                            "add stop = [\"agent_reply\"] (the event that meets the target)".into(),
                        ),
                    );
                    ok = false;
                }
                let warn_at = match own_warn {
                    Some((_, w)) => w.unwrap_or_default(),
                    None => self.defaults.warn_at.clone(),
                };
                let steps = match own_ladder {
                    Some((_, l)) => l.unwrap_or_default(),
                    None => self.defaults.escalate.clone(),
                };
                let escalate = if ok {
                    self.resolve_ladder(&steps, target)
                } else {
                    Vec::new()
                };
                (ClockKind::Deadline, target, warn_at, escalate)
            }
        };

        ok &= self.clock_pausing(&t, &label, paused_in, pause, resume);
        if let (Some(_), ClockKind::Recurring { .. }) = (metric, &kind) {
            let span = t.key_span("metric").unwrap_or(t.span.clone());
            self.err(
                span,
                format!("recurring clock \"{label}\" cannot feed a latency metric: it has no stop to measure"),
                Some("remove \"metric\", or make it a deadline clock with a target".into()),
            );
            ok = false;
        }
        if !pause.is_empty() && resume.is_empty() {
            let span = t.key_span("pause").unwrap_or(t.span.clone());
            self.warn(
                span,
                format!("clock \"{label}\" pauses but never resumes"),
                Some("add resume = [\"customer_message\", \"resumed\"] or the clock stays frozen once paused".into()),
            );
        }
        if let Some(v) = t.get("start") {
            ok &= self.start_reachable(v, start.unwrap_or_default(), phases, &label);
        }

        let id = id?;
        let spec = match (ok, rule, start) {
            (true, Some(rule), Some(start)) => Some(ClockSpec {
                id: id.clone(),
                rule,
                start,
                once,
                after: after.as_ref().map(|(a, _)| a.as_str().into()),
                phases,
                stop,
                pause,
                resume,
                paused_in,
                metric,
                target,
                calendar,
                warn_at,
                kind,
                escalate,
                on_reopen,
                survives_close,
                follow_up,
                position: self.position(&v.span()),
            }),
            _ => None,
        };
        Some(ClockOut {
            spec,
            id,
            id_span: id_v.map(|v| v.span()).unwrap_or(v.span()),
            after,
        })
    }

    /// A set of the phases a clock may start in or pause in (`phases`, `paused_in`): each
    /// name must be one of them; `closed` gets the field's own reason and hint.
    fn phase_set(
        &mut self,
        names: Vec<(&str, Span)>,
        closed_reason: &str,
        closed_hint: &str,
    ) -> Option<PhaseSet> {
        let mut set = PhaseSet::EMPTY;
        let mut ok = true;
        for (name, span) in names {
            match START_PHASES.iter().find(|(_, n)| *n == name) {
                Some((p, _)) => set.0 |= p.bit(),
                None if name == "closed" => {
                    self.err(span, closed_reason, Some(closed_hint.into()));
                    ok = false;
                }
                None => {
                    let hint = suggest(name, START_PHASES.iter().map(|(_, n)| *n), "phases are");
                    self.err(span, format!("unknown phase \"{name}\""), Some(hint));
                    ok = false;
                }
            }
        }
        ok.then_some(set)
    }

    /// `phases`: a phase or a non-empty list of `open`, `waiting`, `on_hold`, `resolved`.
    fn phases(&mut self, v: &Val) -> Option<PhaseSet> {
        let names = self.strings(v, "phases")?;
        if names.is_empty() {
            self.err(
                v.span(),
                "\"phases\" must not be an empty list: the clock could never start",
                Some("omit \"phases\" for the default (open, waiting, on_hold)".into()),
            );
            return None;
        }
        self.phase_set(
            names,
            "clocks never start in the closed phase",
            "to outlive closing, start on \"resolved\" with phases = [\"resolved\"] and survives_close = true",
        )
    }

    /// A start matcher after whose event the ticket is in a phase the clock may not start
    /// in can never start it (the engine checks `phases` after the event's phase change).
    fn start_reachable(
        &mut self,
        v: &Val,
        start: MatcherSet,
        phases: PhaseSet,
        label: &str,
    ) -> bool {
        let mut ok = true;
        for (m, phase) in [
            (Matcher::Opened, Phase::Open),
            (Matcher::Resolved, Phase::Resolved),
            (Matcher::Closed, Phase::Closed),
        ] {
            if !start.contains(m) || phases.contains(phase) {
                continue;
            }
            let span = self.strings_span(v, m.name()).unwrap_or(v.span());
            let hint = if phase == Phase::Closed {
                "clocks never start in the closed phase; start on \"resolved\" with phases = [\"resolved\"] and survives_close = true".to_string()
            } else {
                format!(
                    "add \"{}\" to phases, e.g. phases = [\"{}\"]",
                    phase.as_str(),
                    phase.as_str()
                )
            };
            self.err(
                span,
                format!(
                    "\"{}\" can never start clock \"{label}\": the ticket is {} after it, which is not in \"phases\"",
                    m.name(),
                    phase.as_str()
                ),
                Some(hint),
            );
            ok = false;
        }
        ok
    }

    fn strings_span(&self, v: &Val, name: &str) -> Option<Span> {
        match v.get_ref() {
            DeValue::String(s) if s.as_ref() == name => Some(v.span()),
            DeValue::Array(items) => items
                .iter()
                .find(|i| i.get_ref().as_str() == Some(name))
                .map(|i| i.span()),
            _ => None,
        }
    }

    // ----- whole-file checks -------------------------------------------------------------

    fn unique_ids<'a>(&mut self, what: &str, items: impl Iterator<Item = (&'a str, &'a Span)>) {
        let mut seen: Vec<(&str, &Span)> = Vec::new();
        for (id, span) in items {
            if let Some((_, first)) = seen.iter().find(|(i, _)| *i == id) {
                let line = self.sink.line_of(first);
                self.err(
                    span.clone(),
                    format!("duplicate {what} id \"{id}\""),
                    Some(format!(
                        "first defined at line {line}; {what} ids must be unique"
                    )),
                );
            } else {
                seen.push((id, span));
            }
        }
    }

    /// Warnings: a policy shadowed by an earlier one whose selector covers it, and a file
    /// without a catch-all policy.
    fn reachability(&mut self, policies: &[(Policy, Span, bool)], all_ok: bool) {
        for (j, (later, span, later_ok)) in policies.iter().enumerate() {
            if !later_ok {
                continue;
            }
            let shadow = policies[..j]
                .iter()
                .find(|(p, _, ok)| *ok && covers(&p.selector, &later.selector));
            if let Some((earlier, espan, _)) = shadow {
                let line = self.sink.line_of(espan);
                let message = format!(
                    "policy \"{}\" is unreachable: policy \"{}\" (line {line}) comes first and matches every ticket it would",
                    later.id, earlier.id
                );
                self.warn(
                    span.clone(),
                    message,
                    Some(format!(
                        "the first matching policy wins; move \"{}\" before \"{}\" or narrow \"{}\"'s selector",
                        later.id, earlier.id, earlier.id
                    )),
                );
            }
        }
        let catch_all = policies
            .iter()
            .any(|(p, _, ok)| *ok && covers(&p.selector, &Selector::default()));
        if all_ok && !catch_all {
            let span = policies.last().map(|(_, s, _)| s.clone()).unwrap_or(0..0);
            self.warn(
                span,
                "no catch-all policy: tickets matching no policy get no clocks",
                Some("end the file with a [[policy]] that has no selector fields, e.g. id = \"general\"".into()),
            );
        }
    }
}

fn named<T: Copy>(
    values: impl Iterator<Item = T>,
    name: fn(T) -> &'static str,
) -> Vec<(T, &'static str)> {
    values.map(|v| (v, name(v))).collect()
}

fn role_names() -> impl Iterator<Item = &'static str> + Clone {
    Role::ALL.iter().map(|r| r.as_str())
}

/// True when selector `a` matches every ticket `b` matches.
fn covers(a: &Selector, b: &Selector) -> bool {
    fn field<T: PartialEq + Copy>(a: &AnyOf<T>, b: &AnyOf<T>, universe: &[T]) -> bool {
        match (a, b) {
            (None, _) => true,
            (Some(av), Some(bv)) => bv.iter().all(|x| av.contains(x)),
            (Some(av), None) => !universe.is_empty() && universe.iter().all(|x| av.contains(x)),
        }
    }
    fn strings(a: &AnyOf<String>, b: &AnyOf<String>) -> bool {
        match (a, b) {
            (None, _) => true,
            (Some(av), Some(bv)) => bv.iter().all(|x| av.contains(x)),
            (Some(_), None) => false,
        }
    }
    let channels: Vec<Channel> = std::iter::once(Channel::Unspecified)
        .chain(Channel::ALL.iter().copied())
        .collect();
    let categories: Vec<Category> = std::iter::once(Category::Unspecified)
        .chain(Category::ALL.iter().copied())
        .collect();
    field(&a.channel, &b.channel, &channels)
        && field(&a.category, &b.category, &categories)
        && field(&a.urgency, &b.urgency, Urgency::ALL)
        && field(&a.tier, &b.tier, Tier::ALL)
        && strings(&a.tenant, &b.tenant)
        && strings(&a.team, &b.team)
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// `HH:MM-HH:MM`; an end at or before the start crosses midnight; `24:00` only as an end.
fn parse_interval(s: &str) -> Result<LocalInterval, String> {
    fn clock_time(t: &str) -> Result<u32, String> {
        let (h, m) = t
            .split_once(':')
            .ok_or_else(|| format!("\"{t}\" is not a time of day (HH:MM)"))?;
        let digits =
            |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || m.len() != 2 || !digits(m) {
            return Err(format!("\"{t}\" is not a time of day (HH:MM)"));
        }
        let (h, m): (u32, u32) = (h.parse().unwrap_or(99), m.parse().unwrap_or(99));
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(format!("\"{t}\" is not a time of day (00:00 to 24:00)"));
        }
        Ok(h * 3600 + m * 60)
    }
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| "expected two times joined by \"-\"".to_string())?;
    let start = clock_time(a.trim())?;
    let mut end = clock_time(b.trim())?;
    if start == 86_400 {
        return Err("24:00 can only end an interval".into());
    }
    if end == start {
        return Err("the interval is empty (for a whole day write \"00:00-24:00\")".into());
    }
    if end < start {
        end += 86_400; // crosses midnight: belongs to the day it starts on
    }
    Ok(LocalInterval { start, end })
}

/// Sorts a day's intervals and merges the ones that overlap or touch (their union).
fn merge_intervals(mut ivs: Vec<LocalInterval>) -> Vec<LocalInterval> {
    ivs.sort_by_key(|i| (i.start, i.end));
    let mut out: Vec<LocalInterval> = Vec::with_capacity(ivs.len());
    for iv in ivs {
        match out.last_mut() {
            Some(last) if iv.start <= last.end => last.end = last.end.max(iv.end),
            _ => out.push(iv),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let iv = |s, e| LocalInterval { start: s, end: e };
        assert_eq!(parse_interval("08:30-17:30"), Ok(iv(30_600, 63_000)));
        assert_eq!(parse_interval("17:00-24:00"), Ok(iv(61_200, 86_400)));
        assert_eq!(parse_interval("17:00-01:00"), Ok(iv(61_200, 90_000)));
        assert_eq!(parse_interval("00:00-24:00"), Ok(iv(0, 86_400)));
        for bad in [
            "24:00-01:00",
            "9-17",
            "09:00-09:00",
            "25:00-26:00",
            "08:60-09:00",
            "0830-1730",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(
            merge_intervals(vec![iv(61_200, 86_400), iv(30_600, 63_000)]),
            vec![iv(30_600, 86_400)]
        );
    }

    #[test]
    fn selector_cover() {
        let any = Selector::default();
        let chat = Selector {
            channel: Some(vec![Channel::Chat]),
            ..Selector::default()
        };
        let all_urgencies = Selector {
            urgency: Some(Urgency::ALL.to_vec()),
            ..Selector::default()
        };
        assert!(covers(&any, &chat));
        assert!(!covers(&chat, &any));
        assert!(covers(&all_urgencies, &any));
    }
}
