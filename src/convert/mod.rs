//! `slawatch convert`: turns real ticket event logs (CSV, optionally gzip) into
//! `ConversationEvent`s, so the engine can be replayed over real timing. Two sources, both
//! described in `tests/data/real/README.md`:
//!
//! - [`Source::Uci`]: the ServiceNow incident event log (UCI dataset 498), one row per
//!   update of an incident ([`uci`] documents the mapping);
//! - [`Source::Helpdesk`]: the help-desk log of an Italian software company (4TU), one row
//!   per completed activity ([`helpdesk`] documents the mapping).
//!
//! Choices common to both converters:
//!
//! - **Time.** The logs carry no time zone; timestamps are read as **UTC**. (The after-sales
//!   calendar of the default policy is Asia/Shanghai, so business-hour arithmetic over
//!   these logs is a what-if, not a reconstruction of the original SLA.)
//! - **Order.** A case's rows are ordered by (row time, source ordinal, line): the UCI
//!   `sys_mod_count`, the help desk's file order. A row earlier than the case's opening (a
//!   few UCI rows are) is clamped to the opening time, and every event time is clamped to be
//!   non-decreasing within its case. Rows in the same minute (UCI) or second (help desk)
//!   get no invented sub-second offsets: the engine applies events of one instant in
//!   causal order (opened first, a customer message before its answer, closed last:
//!   docs/sla-semantics.md §2 rule 4, `crate::core::order`), then by event id, and ids are
//!   `<case>-<row ordinal, 5 digits>-<event in row, 2 digits>-<kind>`, e.g.
//!   `INC0000045-00003-01-resolved`, so events of equal rank keep the row sequence.
//!   The `opened` event has ordinal 0; rows count from 1 in the case's sorted order.
//! - **Output order.** All events, sorted by (`occurred_at`, causal rank, `event_id`), as
//!   the engine applies them.
//! - **Category** is `technical` for both logs: both are IT incident / software-support
//!   desks (ServiceNow *incidents*, a software house's help desk with SW-anomaly
//!   activities); their own category columns are anonymised ("Category 55", "Value 1") and
//!   carry no meaning to map. The default policy selects on category `complaint` only, so
//!   `technical` and `inquiry` give the same outputs there. Tier is `standard`.
//! - **Engine retention.** The engine forgets a ticket after `idle_ttl` (30 days) without
//!   an event, and expires a closed ticket `closed_retention` (7 days) after `closed`; an
//!   event for an expired ticket is dead-lettered (`ticket_expired`). The converter therefore **ends a case** at the last event before such a
//!   gap (the rest of the case is dropped and counted in [`ConvertStats::truncated_cases`] /
//!   [`ConvertStats::dropped_events`]); [`ConvertOptions::keep_all`] turns this off.
//! - **Malformed rows** (wrong number of fields, unparsable time or number, a value outside
//!   the log's vocabulary, invalid UTF-8) are skipped, counted and reported with their line
//!   number; a conversion never panics on input. Only I/O errors and a header missing a
//!   required column are fatal.
//! - **Ground truth.** UCI's `made_sla` of a case's last row is kept in
//!   [`CaseInfo::made_sla`] for plausibility checks; it is not an event.
use crate::codec;
use crate::core::engine::EngineConfig;
use crate::core::model::{Body, Event};
use crate::core::order::order_key;
use crate::core::time::{Dur, Ts};
use compact_str::{format_compact, CompactString};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};

pub mod helpdesk;
pub mod uci;

/// Which log a CSV file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Uci,
    Helpdesk,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Uci => "uci",
            Source::Helpdesk => "helpdesk",
        }
    }
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "uci" => Some(Source::Uci),
            "helpdesk" => Some(Source::Helpdesk),
            _ => None,
        }
    }
    /// The tenant events carry unless [`ConvertOptions::tenant`] says otherwise.
    pub fn default_tenant(self) -> &'static str {
        self.as_str()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConvertOptions {
    /// Tenant of every event; `None` = the source's name (`uci`, `helpdesk`).
    pub tenant: Option<String>,
    /// Keep every event even where the engine would have forgotten the ticket (no
    /// truncation at idle or post-close gaps).
    pub keep_all: bool,
    /// The engine's idle and closed retention the truncation follows (defaults: the
    /// engine's).
    pub idle_ttl: Dur,
    pub closed_retention: Dur,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        let cfg = EngineConfig::default();
        ConvertOptions {
            tenant: None,
            keep_all: false,
            idle_ttl: cfg.idle_ttl,
            closed_retention: cfg.closed_retention,
        }
    }
}

/// A skipped row: its first line in the file (1 = the header) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What stops a conversion altogether.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    #[error("header: {0}")]
    Header(String),
}

/// At most this many row errors are kept with their message; all are counted.
pub const MAX_ROW_ERRORS: usize = 100;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConvertStats {
    /// Data rows read (header and blank lines excluded).
    pub rows: u64,
    /// Malformed rows skipped.
    pub skipped: u64,
    /// The first [`MAX_ROW_ERRORS`] skipped rows.
    pub errors: Vec<RowError>,
    /// Cases with at least one valid row.
    pub cases: u64,
    /// Events written (after truncation).
    pub events: u64,
    /// Rows whose time was before the case's opening or an earlier row's, moved forward.
    pub clamped_rows: u64,
    /// Rows whose state the log leaves undefined (UCI `-100`): no state change.
    pub unknown_state_rows: u64,
    /// Cases ended early at an idle or post-close gap (see the module docs).
    pub truncated_cases: u64,
    /// Events dropped by that truncation.
    pub dropped_events: u64,
}

impl ConvertStats {
    fn row_error(&mut self, line: u64, message: String) {
        self.skipped += 1;
        if self.errors.len() < MAX_ROW_ERRORS {
            self.errors.push(RowError { line, message });
        }
    }
}

/// One converted case.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseInfo {
    pub ticket_id: CompactString,
    pub opened_at: Ts,
    /// UCI: `made_sla` of the case's last row; help desk: none.
    pub made_sla: Option<bool>,
    /// Events kept.
    pub events: u32,
    /// Events dropped at an idle or post-close gap.
    pub dropped_events: u32,
}

/// The result of a conversion: events in rule 4 order (`crate::core::order`), the cases
/// sorted by ticket id, and the counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversion {
    pub events: Vec<Event>,
    pub cases: Vec<CaseInfo>,
    pub stats: ConvertStats,
}

/// Converts one log read from `input` (plain CSV; see [`decompress`] for gzip).
pub fn convert(
    source: Source,
    input: impl Read,
    opts: &ConvertOptions,
) -> Result<Conversion, ConvertError> {
    match source {
        Source::Uci => uci::convert(input, opts),
        Source::Helpdesk => helpdesk::convert(input, opts),
    }
}

/// Wraps `input` in a gzip decoder when it starts with the gzip magic bytes.
pub fn decompress<R: Read + 'static>(input: R) -> std::io::Result<Box<dyn Read>> {
    let mut buffered = BufReader::with_capacity(1 << 16, input);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    })
}

/// Writes events as proto3 JSON lines (`codec::event_to_json`).
pub fn write_json_lines(events: &[Event], out: &mut dyn Write) -> std::io::Result<()> {
    for ev in events {
        out.write_all(codec::event_to_json(ev).as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The matcher-style name of an event's body, used in event ids.
pub fn kind_name(body: &Body) -> &'static str {
    match body {
        Body::Opened { .. } => "opened",
        Body::CustomerMessage => "customer_message",
        Body::AgentMessage { .. } => "agent_reply",
        Body::AutoReply => "auto_reply",
        Body::Assigned => "assigned",
        Body::Transferred { .. } => "transferred",
        Body::UrgencyChanged(_) => "urgency_changed",
        Body::Escalated(_) => "escalated",
        Body::EscalationAnswered(_) => "escalation_answered",
        Body::DepartmentRequested => "department_requested",
        Body::HandedToDepartment => "handed_to_department",
        Body::DepartmentStarted => "department_started",
        Body::WaitingOnCustomer => "waiting_on_customer",
        Body::Resolved => "resolved",
        Body::Feedback { .. } => "feedback",
        Body::Reopened => "reopened",
        Body::FollowUpDone => "follow_up_done",
        Body::Closed => "closed",
        Body::OnHold => "on_hold",
        Body::Resumed => "resumed",
    }
}

/// Builds one case's events: ids from (row ordinal, position in row), times clamped to be
/// non-decreasing.
pub(crate) struct CaseEvents {
    ticket: CompactString,
    tenant: CompactString,
    events: Vec<Event>,
    last: Ts,
    row: u32,
    sub: u32,
}

impl CaseEvents {
    /// Starts a case with its `opened` event (row ordinal 0).
    pub(crate) fn open(ticket: &str, tenant: &str, at: Ts, opened: Body) -> CaseEvents {
        let mut c = CaseEvents {
            ticket: CompactString::from(ticket),
            tenant: CompactString::from(tenant),
            events: Vec::new(),
            last: at,
            row: 0,
            sub: 0,
        };
        c.push(opened);
        c
    }

    /// Begins row `ordinal` (from 1) at `at`; returns whether the time had to be clamped.
    pub(crate) fn row(&mut self, ordinal: u32, at: Ts) -> bool {
        self.row = ordinal;
        self.sub = 0;
        if at < self.last {
            true
        } else {
            self.last = at;
            false
        }
    }

    pub(crate) fn push(&mut self, body: Body) {
        let event_id = format_compact!(
            "{}-{:05}-{:02}-{}",
            self.ticket,
            self.row,
            self.sub,
            kind_name(&body)
        );
        self.sub += 1;
        self.events.push(Event {
            event_id,
            ticket_id: self.ticket.clone(),
            occurred_at: self.last,
            tenant: self.tenant.clone(),
            body,
        });
    }

    /// Applies the retention truncation and returns the case's info and events.
    pub(crate) fn finish(
        mut self,
        opts: &ConvertOptions,
        made_sla: Option<bool>,
    ) -> (CaseInfo, Vec<Event>) {
        let opened_at = self.events[0].occurred_at;
        let keep = if opts.keep_all {
            self.events.len()
        } else {
            retained_len(&self.events, opts.idle_ttl, opts.closed_retention)
        };
        let dropped = self.events.len() - keep;
        self.events.truncate(keep);
        let info = CaseInfo {
            ticket_id: self.ticket,
            opened_at,
            made_sla,
            events: keep as u32,
            dropped_events: dropped as u32,
        };
        (info, self.events)
    }
}

/// How many leading events of one case the engine keeps the ticket for: the case ends
/// before the first event more than `idle_ttl` after the previous one, or more than
/// `closed_retention` after a `closed` not followed by a reopen. (At equal instants events
/// apply before timers, so a gap of exactly the retention is kept.)
fn retained_len(events: &[Event], idle_ttl: Dur, closed_retention: Dur) -> usize {
    let Some(first) = events.first() else {
        return 0;
    };
    let mut last = first.occurred_at;
    let mut closed_at: Option<Ts> = None;
    for (i, ev) in events.iter().enumerate() {
        let t = ev.occurred_at;
        if t.since(last) > idle_ttl {
            return i;
        }
        if closed_at.is_some_and(|c| t.since(c) > closed_retention) {
            return i;
        }
        match ev.body {
            Body::Closed => closed_at = closed_at.or(Some(t)),
            Body::Reopened
            | Body::Feedback {
                satisfied: Some(false),
            } => closed_at = None,
            _ => {}
        }
        last = t;
    }
    events.len()
}

/// A case's rows converted to its events (the log-specific part of a converter).
pub(crate) type CaseConverter<'a, R> =
    &'a dyn Fn(&str, &mut [R], &str, &ConvertOptions, &mut ConvertStats) -> (CaseInfo, Vec<Event>);

/// The driver both converters share: reads the CSV, parses each record with the log's
/// columns (`parse`; a bad row is counted and reported, never fatal), groups rows by case
/// id, converts each case and assembles the [`Conversion`].
pub(crate) fn convert_log<C, R>(
    input: impl Read,
    opts: &ConvertOptions,
    source: Source,
    columns: impl FnOnce(&Header) -> Result<C, ConvertError>,
    parse: impl Fn(&C, u64, &[String]) -> Result<(CompactString, R), String>,
    convert_case: CaseConverter<'_, R>,
) -> Result<Conversion, ConvertError> {
    let mut csv = CsvReader::new(BufReader::with_capacity(1 << 16, input));
    let header = Header::read(&mut csv)?;
    let cols = columns(&header)?;
    let mut stats = ConvertStats::default();
    let mut by_case: BTreeMap<CompactString, Vec<R>> = BTreeMap::new();
    while let Some((line, record)) = csv.next_record()? {
        stats.rows += 1;
        match record.and_then(|f| parse(&cols, line, &f)) {
            Ok((case, row)) => by_case.entry(case).or_default().push(row),
            Err(msg) => stats.row_error(line, msg),
        }
    }
    let tenant = opts
        .tenant
        .clone()
        .unwrap_or_else(|| source.default_tenant().to_string());
    let cases = by_case
        .into_iter()
        .map(|(case, mut rows)| convert_case(&case, &mut rows, &tenant, opts, &mut stats))
        .collect();
    Ok(assemble(cases, stats))
}

/// Collects cases into a [`Conversion`]: cases by ticket id, events by (time, id).
pub(crate) fn assemble(
    mut cases: Vec<(CaseInfo, Vec<Event>)>,
    mut stats: ConvertStats,
) -> Conversion {
    cases.sort_by(|a, b| a.0.ticket_id.cmp(&b.0.ticket_id));
    let total: usize = cases.iter().map(|c| c.1.len()).sum();
    let mut events = Vec::with_capacity(total);
    let mut infos = Vec::with_capacity(cases.len());
    for (info, evs) in cases {
        if info.dropped_events > 0 {
            stats.truncated_cases += 1;
            stats.dropped_events += info.dropped_events as u64;
        }
        infos.push(info);
        events.extend(evs);
    }
    events.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    stats.cases = infos.len() as u64;
    stats.events = events.len() as u64;
    Conversion {
        events,
        cases: infos,
        stats,
    }
}

/// A minimal RFC 4180 reader: comma-separated, `"` quoting with `""` escapes, quoted
/// fields may span lines, LF or CRLF line ends. Blank lines are skipped.
pub(crate) struct CsvReader<R> {
    input: R,
    /// Lines consumed so far.
    line: u64,
    buf: Vec<u8>,
}

/// Quoted fields may span lines, but a record longer than this is malformed.
const MAX_RECORD_BYTES: usize = 1 << 20;

impl<R: BufRead> CsvReader<R> {
    pub(crate) fn new(input: R) -> Self {
        CsvReader {
            input,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// The next record: `Ok(None)` at the end, `Ok(Some((line, Err(msg))))` for a record
    /// that cannot be read as text (the reader resynchronises at the next line).
    #[allow(clippy::type_complexity)]
    pub(crate) fn next_record(
        &mut self,
    ) -> std::io::Result<Option<(u64, Result<Vec<String>, String>)>> {
        loop {
            self.buf.clear();
            if self.input.read_until(b'\n', &mut self.buf)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            let start = self.line;
            loop {
                match split_record(&self.buf) {
                    Split::Done(fields) => {
                        if fields.len() == 1 && fields[0].is_empty() {
                            break; // blank line
                        }
                        let text: Result<Vec<String>, _> =
                            fields.into_iter().map(String::from_utf8).collect();
                        return Ok(Some((start, text.map_err(|_| "invalid UTF-8".to_string()))));
                    }
                    Split::OpenQuote => {
                        if self.buf.len() > MAX_RECORD_BYTES {
                            return Ok(Some((
                                start,
                                Err(format!(
                                    "record longer than {MAX_RECORD_BYTES} bytes (unterminated quote?)"
                                )),
                            )));
                        }
                        if self.input.read_until(b'\n', &mut self.buf)? == 0 {
                            return Ok(Some((
                                start,
                                Err("unterminated quoted field at end of file".into()),
                            )));
                        }
                        self.line += 1;
                    }
                }
            }
        }
    }
}

enum Split {
    Done(Vec<Vec<u8>>),
    OpenQuote,
}

fn split_record(raw: &[u8]) -> Split {
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut at_start = true;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if quoted {
            if b == b'"' {
                if raw.get(i + 1) == Some(&b'"') {
                    cur.push(b'"');
                    i += 1;
                } else {
                    quoted = false;
                }
            } else {
                cur.push(b);
            }
        } else {
            match b {
                b',' => {
                    fields.push(std::mem::take(&mut cur));
                    at_start = true;
                    i += 1;
                    continue;
                }
                b'"' if at_start => quoted = true,
                b'\n' => break,
                b'\r' if raw.get(i + 1).is_none_or(|n| *n == b'\n') => break,
                _ => cur.push(b),
            }
        }
        at_start = false;
        i += 1;
    }
    if quoted {
        return Split::OpenQuote;
    }
    fields.push(cur);
    Split::Done(fields)
}

/// Column positions by header name.
pub(crate) struct Header {
    names: Vec<String>,
}

impl Header {
    /// Reads the header record.
    pub(crate) fn read<R: BufRead>(csv: &mut CsvReader<R>) -> Result<Header, ConvertError> {
        match csv.next_record()? {
            None => Err(ConvertError::Header("empty input (no header row)".into())),
            Some((line, Err(e))) => Err(ConvertError::Header(format!("line {line}: {e}"))),
            Some((_, Ok(mut names))) => {
                if let Some(first) = names.first_mut() {
                    if let Some(stripped) = first.strip_prefix('\u{feff}') {
                        *first = stripped.to_string();
                    }
                }
                Ok(Header { names })
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The position of a required column (the first of that name).
    pub(crate) fn col(&self, name: &str) -> Result<usize, ConvertError> {
        self.names
            .iter()
            .position(|n| n.trim() == name)
            .ok_or_else(|| {
                ConvertError::Header(format!(
                    "missing column {name:?} (found: {})",
                    self.names.join(",")
                ))
            })
    }
}

/// A date and time of day, no zone, read as UTC.
pub(crate) fn utc(
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    millis: u32,
) -> Option<Ts> {
    let t = chrono::NaiveDate::from_ymd_opt(year, month, day)?
        .and_hms_milli_opt(hour, min, sec, millis)?;
    Some(Ts::from_chrono(&t.and_utc()))
}

/// Parses a non-negative decimal integer of at most 9 digits (no sign, no spaces).
pub(crate) fn small_uint(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(u64, Result<Vec<String>, String>)> {
        let mut r = CsvReader::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        out
    }

    #[test]
    fn csv_quotes_blank_lines_and_crlf() {
        let recs = records("a,b,c\r\n\n\"x,1\",\"he said \"\"hi\"\"\",\n\"multi\nline\",2,3\nlast");
        let fields: Vec<_> = recs.iter().map(|(l, r)| (*l, r.clone().unwrap())).collect();
        assert_eq!(
            fields,
            vec![
                (1, vec!["a".into(), "b".into(), "c".into()]),
                (
                    3,
                    vec!["x,1".into(), "he said \"hi\"".into(), String::new()]
                ),
                (4, vec!["multi\nline".into(), "2".into(), "3".into()]),
                (6, vec!["last".into()]),
            ]
        );
    }

    #[test]
    fn csv_reports_bad_records_and_continues() {
        let mut text = b"a,b\n".to_vec();
        text.extend_from_slice(b"\xff\xfe,1\nok,2\n\"open");
        let mut r = CsvReader::new(&text[..]);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(rec);
        }
        assert_eq!(out.len(), 4);
        assert_eq!(out[1], (2, Err("invalid UTF-8".to_string())));
        assert_eq!(out[2], (3, Ok(vec!["ok".to_string(), "2".to_string()])));
        assert!(out[3].1.as_ref().unwrap_err().contains("unterminated"));
    }

    #[test]
    fn gzip_is_detected_by_magic() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello,gz\n").unwrap();
        let gz = enc.finish().unwrap();
        let mut s = String::new();
        decompress(std::io::Cursor::new(gz))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello,gz\n");
        let mut s = String::new();
        decompress(std::io::Cursor::new(b"plain\n".to_vec()))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "plain\n");
    }

    fn ev(t: i64, body: Body) -> Event {
        Event {
            event_id: "e".into(),
            ticket_id: "T".into(),
            occurred_at: Ts::from_secs(t),
            tenant: "x".into(),
            body,
        }
    }

    #[test]
    fn retention_cuts_at_idle_and_post_close_gaps() {
        let day = 86_400;
        let (idle, closed) = (Dur::from_secs(30 * day), Dur::from_secs(7 * day));
        let opened = Body::Opened {
            channel: Default::default(),
            category: Default::default(),
            urgency: Default::default(),
            tier: Default::default(),
            team: Default::default(),
        };
        // Exactly 30 days is kept (events apply before the idle timer); more is cut.
        let evs = vec![
            ev(0, opened.clone()),
            ev(30 * day, Body::Resolved),
            ev(60 * day + 1, Body::Closed),
        ];
        assert_eq!(retained_len(&evs, idle, closed), 2);
        // A reopen 7 days after close is kept; 8 days is cut.
        let evs = vec![
            ev(0, opened.clone()),
            ev(1, Body::Closed),
            ev(7 * day + 1, Body::Reopened),
        ];
        assert_eq!(retained_len(&evs, idle, closed), 3);
        let evs = vec![
            ev(0, opened.clone()),
            ev(1, Body::Closed),
            ev(8 * day, Body::Reopened),
        ];
        assert_eq!(retained_len(&evs, idle, closed), 2);
        // After a reopen the close gap no longer applies.
        let evs = vec![
            ev(0, opened),
            ev(1, Body::Closed),
            ev(2, Body::Reopened),
            ev(20 * day, Body::Resolved),
        ];
        assert_eq!(retained_len(&evs, idle, closed), 4);
    }
}
