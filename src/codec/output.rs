//! `slawatch.v1.SlaEvent` written straight from the typed [`SlaOutput`] into a reused
//! buffer: proto3 canonical JSON and protobuf, with no intermediate message, no
//! `serde_json::Value` and no timestamp re-parse. The bytes equal what `prost` and `pbjson`
//! write for the same event (this module's tests compare them), so consumers,
//! replays and byte-for-byte comparisons see no change.
//!
//! JSON: fields in proto field order, camelCase names, default values omitted, enums by
//! name, 64-bit integers as JSON strings (none here), timestamps RFC 3339 in UTC with `Z`
//! and 0, 3, 6 or 9 fractional digits, durations `"<s>[.fff[fff[fff]]]s"`, doubles as
//! serde_json writes them (shortest round trip, `null` when not finite).
use crate::core::model::{OutputBody, SlaOutput};
use crate::core::time::{Dur, Ts};
use crate::proto::v1 as pb;

/// Appends the canonical JSON of `o` (one line, no newline) to `out`.
pub fn write_json(o: &SlaOutput, out: &mut Vec<u8>) {
    let mut w = JsonObject::new(out);
    w.field_u128_hex("eventId", o.event_id.0);
    w.field_str("ticketId", &o.ticket_id);
    w.field_str("tenant", &o.tenant);
    w.field_str("policyId", &o.policy_id);
    w.field_str("ruleId", &o.rule_id);
    w.field_str("clock", &o.clock);
    w.field_ts("deadline", o.deadline);
    if let Some(t) = o.target {
        w.field_dur("target", t);
    }
    w.field_ts("firedAt", o.fired_at);
    let (name, body) = body_name(&o.body);
    w.key(name);
    let mut b = JsonObject::new(w.out);
    match body {
        OutputBody::Warning { fraction } => b.field_f64("fraction", *fraction),
        OutputBody::Breach { overdue } | OutputBody::Cleared { overdue } => {
            b.field_dur("overdue", *overdue)
        }
        OutputBody::Escalation {
            level,
            notify,
            reason,
        } => {
            b.field_u32("level", *level);
            if !notify.is_empty() {
                b.key("notify");
                b.out.push(b'[');
                for (i, r) in notify.iter().enumerate() {
                    if i > 0 {
                        b.out.push(b',');
                    }
                    let name = pb::Role::try_from(*r as i32)
                        .map(|r| r.as_str_name())
                        .unwrap_or("ROLE_UNSPECIFIED");
                    write_json_str(b.out, name);
                }
                b.out.push(b']');
            }
            b.field_str("reason", reason);
        }
        OutputBody::ProgressReminder { nth, interval } => {
            b.field_u32("nth", *nth);
            b.field_dur("interval", *interval);
        }
        OutputBody::FollowUpDue => {}
        OutputBody::SurgeStarted {
            channel,
            category,
            observed_per_min,
            baseline_per_min,
            ratio,
        } => {
            b.field_enum("channel", channel_name(*channel as i32));
            b.field_enum("category", category_name(*category as i32));
            b.field_f64("observedPerMin", *observed_per_min);
            b.field_f64("baselinePerMin", *baseline_per_min);
            b.field_f64("ratio", *ratio);
        }
        OutputBody::SurgeEnded {
            channel,
            category,
            observed_per_min,
            baseline_per_min,
        } => {
            b.field_enum("channel", channel_name(*channel as i32));
            b.field_enum("category", category_name(*category as i32));
            b.field_f64("observedPerMin", *observed_per_min);
            b.field_f64("baselinePerMin", *baseline_per_min);
        }
    }
    b.close();
    w.close();
}

/// Appends the protobuf encoding of `o` to `out`.
pub fn write_protobuf(o: &SlaOutput, out: &mut Vec<u8>) {
    let mut id = [0u8; 32];
    hex32(o.event_id.0, &mut id);
    pb_bytes(out, 1, &id);
    pb_bytes(out, 2, o.ticket_id.as_bytes());
    pb_bytes(out, 3, o.tenant.as_bytes());
    pb_bytes(out, 4, o.policy_id.as_bytes());
    pb_bytes(out, 5, o.rule_id.as_bytes());
    pb_bytes(out, 6, o.clock.as_bytes());
    pb_seconds_nanos(out, 7, o.deadline.to_parts());
    if let Some(t) = o.target {
        pb_seconds_nanos(out, 8, t.to_parts());
    }
    pb_seconds_nanos(out, 9, o.fired_at.to_parts());
    // The body: a length-delimited message whose length is known only once written, so it
    // goes to the end of `out` and its length prefix is inserted before it.
    let (tag, body) = match &o.body {
        OutputBody::Warning { .. } => (10, &o.body),
        OutputBody::Breach { .. } => (11, &o.body),
        OutputBody::Escalation { .. } => (12, &o.body),
        OutputBody::ProgressReminder { .. } => (13, &o.body),
        OutputBody::FollowUpDue => (14, &o.body),
        OutputBody::SurgeStarted { .. } => (15, &o.body),
        OutputBody::SurgeEnded { .. } => (16, &o.body),
        OutputBody::Cleared { .. } => (17, &o.body),
    };
    pb_key(out, tag, 2);
    let start = out.len();
    match body {
        OutputBody::Warning { fraction } => pb_double(out, 1, *fraction),
        OutputBody::Breach { overdue } | OutputBody::Cleared { overdue } => {
            pb_seconds_nanos(out, 1, overdue.to_parts())
        }
        OutputBody::Escalation {
            level,
            notify,
            reason,
        } => {
            pb_uint(out, 1, *level as u64);
            if !notify.is_empty() {
                // Packed repeated enum.
                let len: usize = notify.iter().map(|r| varint_len(*r as i32 as u64)).sum();
                pb_key(out, 2, 2);
                varint(out, len as u64);
                for r in notify.iter() {
                    varint(out, *r as i32 as i64 as u64);
                }
            }
            pb_bytes(out, 3, reason.as_bytes());
        }
        OutputBody::ProgressReminder { nth, interval } => {
            pb_uint(out, 1, *nth as u64);
            pb_seconds_nanos(out, 2, interval.to_parts());
        }
        OutputBody::FollowUpDue => {}
        OutputBody::SurgeStarted {
            channel,
            category,
            observed_per_min,
            baseline_per_min,
            ratio,
        } => {
            pb_uint(out, 1, *channel as i32 as i64 as u64);
            pb_uint(out, 2, *category as i32 as i64 as u64);
            pb_double(out, 3, *observed_per_min);
            pb_double(out, 4, *baseline_per_min);
            pb_double(out, 5, *ratio);
        }
        OutputBody::SurgeEnded {
            channel,
            category,
            observed_per_min,
            baseline_per_min,
        } => {
            pb_uint(out, 1, *channel as i32 as i64 as u64);
            pb_uint(out, 2, *category as i32 as i64 as u64);
            pb_double(out, 3, *observed_per_min);
            pb_double(out, 4, *baseline_per_min);
        }
    }
    insert_len_prefix(out, start);
}

fn body_name(b: &OutputBody) -> (&'static str, &OutputBody) {
    let name = match b {
        OutputBody::Warning { .. } => "warning",
        OutputBody::Breach { .. } => "breach",
        OutputBody::Escalation { .. } => "escalation",
        OutputBody::ProgressReminder { .. } => "progressReminder",
        OutputBody::FollowUpDue => "followUpDue",
        OutputBody::SurgeStarted { .. } => "surgeStarted",
        OutputBody::SurgeEnded { .. } => "surgeEnded",
        OutputBody::Cleared { .. } => "cleared",
    };
    (name, b)
}

fn channel_name(v: i32) -> Option<&'static str> {
    (v != 0).then(|| {
        pb::Channel::try_from(v)
            .map(|c| c.as_str_name())
            .unwrap_or("CHANNEL_UNSPECIFIED")
    })
}

fn category_name(v: i32) -> Option<&'static str> {
    (v != 0).then(|| {
        pb::Category::try_from(v)
            .map(|c| c.as_str_name())
            .unwrap_or("CATEGORY_UNSPECIFIED")
    })
}

// -------------------------------------------------------------------------------------
// JSON
// -------------------------------------------------------------------------------------

/// An object being written: `{` on creation, commas between fields, `}` on close.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    fn new(out: &'a mut Vec<u8>) -> JsonObject<'a> {
        out.push(b'{');
        JsonObject { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
    fn field_str(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            self.key(k);
            write_json_str(self.out, v);
        }
    }
    fn field_enum(&mut self, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.key(k);
            write_json_str(self.out, v);
        }
    }
    fn field_u128_hex(&mut self, k: &str, v: u128) {
        self.key(k);
        let mut hex = [0u8; 32];
        hex32(v, &mut hex);
        self.out.push(b'"');
        self.out.extend_from_slice(&hex);
        self.out.push(b'"');
    }
    fn field_u32(&mut self, k: &str, v: u32) {
        if v != 0 {
            self.key(k);
            write_int(self.out, v as i64);
        }
    }
    fn field_f64(&mut self, k: &str, v: f64) {
        if v != 0.0 {
            self.key(k);
            if v.is_finite() {
                let mut b = zmij::Buffer::new();
                self.out.extend_from_slice(b.format_finite(v).as_bytes());
            } else {
                self.out.extend_from_slice(b"null");
            }
        }
    }
    fn field_ts(&mut self, k: &str, t: Ts) {
        self.key(k);
        self.out.push(b'"');
        write_rfc3339_z(self.out, t);
        self.out.push(b'"');
    }
    fn field_dur(&mut self, k: &str, d: Dur) {
        self.key(k);
        self.out.push(b'"');
        write_duration(self.out, d);
        self.out.push(b'"');
    }
    fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON string as serde_json escapes it. Ids and names need no escaping: they are
/// checked in one pass without early exit (which the compiler vectorises) and copied
/// whole; a string that needs escaping takes the byte-by-byte path.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let plain = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if plain {
        out.extend_from_slice(bytes);
    } else {
        write_escaped(out, bytes);
    }
    out.push(b'"');
}

/// The body of a JSON string that has bytes to escape.
#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

fn write_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// `n` as exactly `width` decimal digits (zero-padded).
fn write_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 9];
    let mut n = n;
    for i in (0..width).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// `00` … `99`, two ASCII digits per number.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// `n` (< 100) as two digits at `at`.
#[inline(always)]
fn put_pair(buf: &mut [u8], at: usize, n: u32) {
    let i = 2 * n as usize;
    buf[at..at + 2].copy_from_slice(&PAIRS[i..i + 2]);
}

/// 0, 3, 6 or 9 fractional digits: as many as the nanoseconds need.
fn write_fraction(out: &mut Vec<u8>, nanos: u32) {
    if nanos == 0 {
        return;
    }
    out.push(b'.');
    if nanos.is_multiple_of(1_000_000) {
        write_padded(out, (nanos / 1_000_000) as u64, 3);
    } else if nanos.is_multiple_of(1_000) {
        write_padded(out, (nanos / 1_000) as u64, 6);
    } else {
        write_padded(out, nanos as u64, 9);
    }
}

/// RFC 3339 in UTC with `Z` (what `codec::rfc3339_z` writes through chrono). Years outside
/// 0000–9999 are not RFC 3339; they go through chrono as before.
pub fn write_rfc3339_z(out: &mut Vec<u8>, t: Ts) {
    let (secs, nanos) = t.to_parts();
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        out.extend_from_slice(super::rfc3339_z(t).as_bytes());
        return;
    }
    let (y, sod) = (y as u32, sod as u32);
    let mut buf = *b"0000-00-00T00:00:00";
    put_pair(&mut buf, 0, y / 100);
    put_pair(&mut buf, 2, y % 100);
    put_pair(&mut buf, 5, m);
    put_pair(&mut buf, 8, d);
    put_pair(&mut buf, 11, sod / 3600);
    put_pair(&mut buf, 14, sod / 60 % 60);
    put_pair(&mut buf, 17, sod % 60);
    out.extend_from_slice(&buf);
    write_fraction(out, nanos as u32);
    out.push(b'Z');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A protobuf JSON duration: `"-1.500s"`, `"0s"`, `"90s"`.
fn write_duration(out: &mut Vec<u8>, d: Dur) {
    let (secs, nanos) = d.to_parts();
    if secs == 0 {
        if nanos < 0 {
            out.extend_from_slice(b"-0");
        } else {
            out.push(b'0');
        }
    } else {
        write_int(out, secs);
    }
    write_fraction(out, nanos.unsigned_abs());
    out.push(b's');
}

fn hex32(v: u128, out: &mut [u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair[0] = HEX[(byte >> 4) as usize];
        pair[1] = HEX[(byte & 0xf) as usize];
    }
}

// -------------------------------------------------------------------------------------
// Protobuf
// -------------------------------------------------------------------------------------

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn pb_key(out: &mut Vec<u8>, tag: u32, wire: u8) {
    varint(out, ((tag as u64) << 3) | wire as u64);
}

fn pb_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        pb_key(out, tag, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

fn pb_uint(out: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        pb_key(out, tag, 0);
        varint(out, v);
    }
}

fn pb_double(out: &mut Vec<u8>, tag: u32, v: f64) {
    // prost skips a value equal to 0.0 (so -0.0 too; NaN is written).
    if v != 0.0 {
        pb_key(out, tag, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A `google.protobuf.Timestamp` / `Duration` field (always present, maybe empty).
fn pb_seconds_nanos(out: &mut Vec<u8>, tag: u32, (secs, nanos): (i64, i32)) {
    pb_key(out, tag, 2);
    let len = if secs != 0 {
        1 + varint_len(secs as u64)
    } else {
        0
    } + if nanos != 0 {
        1 + varint_len(nanos as i64 as u64)
    } else {
        0
    };
    varint(out, len as u64);
    pb_uint(out, 1, secs as u64);
    pb_uint(out, 2, nanos as i64 as u64);
}

/// Inserts the varint length of `out[start..]` at `start`.
fn insert_len_prefix(out: &mut Vec<u8>, start: usize) {
    let len = (out.len() - start) as u64;
    let n = varint_len(len);
    let mut prefix = [0u8; 10];
    let mut v = len;
    for b in prefix.iter_mut().take(n) {
        *b = (v as u8 & 0x7f) | if v >= 0x80 { 0x80 } else { 0 };
        v >>= 7;
    }
    out.splice(start..start, prefix[..n].iter().copied());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{output_id, Category, Channel, Role};
    use crate::core::time::NANOS_PER_SEC;
    use std::sync::Arc;

    /// The encoders they replace: through the prost message (and pbjson + serde_json for
    /// JSON, with the timestamps rewritten to `Z`).
    fn reference_json(o: &SlaOutput) -> String {
        let mut v = serde_json::to_value(super::super::output_to_proto(o)).unwrap();
        if let serde_json::Value::Object(map) = &mut v {
            for f in ["deadline", "firedAt"] {
                if let Some(serde_json::Value::String(s)) = map.get_mut(f) {
                    if let Ok(t) = Ts::parse_rfc3339(s) {
                        *s = super::super::rfc3339_z(t);
                    }
                }
            }
        }
        serde_json::to_string(&v).unwrap()
    }
    fn reference_protobuf(o: &SlaOutput) -> Vec<u8> {
        use prost::Message;
        super::super::output_to_proto(o).encode_to_vec()
    }

    fn sample(body: OutputBody, seed: u64) -> SlaOutput {
        let s = seed as i64;
        let nanos = [
            0,
            1,
            1_000,
            1_000_000,
            123_456_789,
            500_000_000,
            999_999_999,
        ];
        SlaOutput {
            event_id: output_id("", "t", "p", "c", &body, Ts(s)),
            ticket_id: format!("tk-{seed}\"\\\n\u{1}é/").into(),
            tenant: if seed.is_multiple_of(3) {
                "".into()
            } else {
                "acme".into()
            },
            policy_id: Arc::from("chat-urgent"),
            rule_id: Arc::from("R1"),
            clock: Arc::from("first_response"),
            deadline: Ts(1_700_000_000 * NANOS_PER_SEC
                + s * 7_919_000_003
                + nanos[seed as usize % nanos.len()]),
            target: (!seed.is_multiple_of(4))
                .then_some(Dur(s * 60_000_000_000 + nanos[seed as usize % 7])),
            fired_at: Ts(s * 86_400 * NANOS_PER_SEC * 37 - s * 13),
            body,
            clock_pos: 0,
        }
    }

    fn bodies(seed: u64) -> Vec<OutputBody> {
        let f = [
            0.0,
            0.5,
            0.8,
            1.0,
            1.0 / 3.0,
            1e-7,
            12345.678,
            1e21,
            f64::NAN,
            -0.0,
        ];
        let x = f[seed as usize % f.len()];
        let d = Dur((seed as i64 - 5) * 1_234_567_891);
        let notify: Arc<[Role]> = match seed % 3 {
            0 => Arc::from(vec![]),
            1 => Arc::from(vec![Role::Agent]),
            _ => Arc::from(vec![Role::TeamLead, Role::Supervisor, Role::DepartmentHead]),
        };
        let ch = [Channel::Unspecified, Channel::Chat, Channel::Email][seed as usize % 3];
        let cat = [
            Category::Unspecified,
            Category::AfterSales,
            Category::Technical,
        ][seed as usize % 3];
        vec![
            OutputBody::Warning { fraction: x },
            OutputBody::Breach { overdue: d },
            OutputBody::Escalation {
                level: (seed % 4) as u32,
                notify,
                reason: Arc::from(if seed.is_multiple_of(2) { "" } else { "breach" }),
            },
            OutputBody::ProgressReminder {
                nth: (seed % 3) as u32,
                interval: Dur(seed as i64 * 1_500_000_000),
            },
            OutputBody::FollowUpDue,
            OutputBody::SurgeStarted {
                channel: ch,
                category: cat,
                observed_per_min: x * 3.0,
                baseline_per_min: 2.5,
                ratio: x,
            },
            OutputBody::SurgeEnded {
                channel: ch,
                category: cat,
                observed_per_min: 0.0,
                baseline_per_min: x,
            },
            OutputBody::Cleared { overdue: d },
        ]
    }

    #[test]
    fn json_and_protobuf_equal_the_prost_and_pbjson_encodings() {
        let mut buf = Vec::new();
        for seed in 0..200u64 {
            for body in bodies(seed) {
                let o = sample(body, seed);
                buf.clear();
                write_json(&o, &mut buf);
                assert_eq!(
                    std::str::from_utf8(&buf).unwrap(),
                    reference_json(&o),
                    "{o:?}"
                );
                buf.clear();
                write_protobuf(&o, &mut buf);
                assert_eq!(buf, reference_protobuf(&o), "{o:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn strings_are_escaped_as_serde_json_does(s in "(?s).{0,40}", ascii in "[ -~\\x00-\\x1f]{0,40}") {
            for s in [s, ascii] {
                let mut b = Vec::new();
                write_json_str(&mut b, &s);
                proptest::prop_assert_eq!(String::from_utf8(b).unwrap(), serde_json::to_string(&s).unwrap());
            }
        }

        #[test]
        fn timestamps_are_written_as_chrono_writes_them(secs in -9_200_000_000i64..9_200_000_000, nanos in 0i64..1_000_000_000, round in 0usize..4) {
            let nanos = [nanos, nanos / 1_000 * 1_000, nanos / 1_000_000 * 1_000_000, 0][round];
            let t = Ts(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos));
            let mut b = Vec::new();
            write_rfc3339_z(&mut b, t);
            proptest::prop_assert_eq!(String::from_utf8(b).unwrap(), super::super::rfc3339_z(t));
        }
    }

    #[test]
    fn timestamps_and_durations() {
        let ts = |t: Ts| {
            let mut b = Vec::new();
            write_rfc3339_z(&mut b, t);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(ts(Ts(0)), "1970-01-01T00:00:00Z");
        assert_eq!(ts(Ts(-1)), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            ts(Ts::parse_rfc3339("2024-02-29T23:59:58.120Z").unwrap()),
            "2024-02-29T23:59:58.120Z"
        );
        for t in [Ts::MIN, Ts::MAX, Ts(951_782_400_000_000_123)] {
            assert_eq!(ts(t), super::super::rfc3339_z(t));
        }
        let dur = |d: Dur| {
            let mut b = Vec::new();
            write_duration(&mut b, d);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(dur(Dur(0)), "0s");
        assert_eq!(dur(Dur(-500_000_000)), "-0.500s");
        assert_eq!(dur(Dur(90 * NANOS_PER_SEC + 1_000)), "90.000001s");
    }
}
