//! Records of a replay input, read as the live processor reads Kafka record values: each
//! one goes through [`framing::decode_record`] with the `--format` given (no header, so
//! `auto` recognises JSON, Schema Registry framing and raw protobuf from the bytes).
//!
//! # File layout (docs/replay.md "Input formats")
//! - `protobuf`, `schema-registry-protobuf`, `schema-registry-json`: length-delimited
//!   record values — a protobuf varint length, then the value exactly as a producer puts it
//!   on the topic (framing included), as protobuf's `writeDelimitedTo` writes and as
//!   `tests/data/framing/` stores them. Values are binary (a schema id can hold a newline
//!   byte), so they cannot be lines.
//! - `auto` and `json`: JSON lines (blank lines skipped) when the first non-blank line starts a JSON object (`{` followed,
//!   after blanks, by `"` or `}`); anything else is length-delimited. A length-delimited
//!   file cannot look like that: its first byte is a length, and after a length of 123
//!   (`{`) comes a record, which starts with `{` (JSON), a magic byte 0/1 or a protobuf tag,
//!   never `"`: field 4 (`"`) is not written before field 1, `event_id`. So `json` reads
//!   length-delimited JSON values too (`tests/data/framing/events.json.bin`).
use crate::codec::framing::{self, InputFormat};
use crate::codec::{DecodeError, Decoded};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Cursor, Read};

/// One record that did not decode.
pub struct Rejected {
    /// `line` or `record`, with its 1-based number.
    pub what: &'static str,
    pub number: u64,
    pub reason: &'static str,
    pub detail: String,
    /// The ticket the record names, when it is readable JSON with a ticket id.
    pub ticket_id: Option<String>,
}

/// How the file holds its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One record per line.
    Lines,
    /// A varint length before each record.
    Delimited,
}

impl Layout {
    /// The layout of a binary format (`auto` and `json` look at the file).
    fn of(format: InputFormat) -> Option<Layout> {
        match format {
            InputFormat::Auto | InputFormat::Json => None,
            InputFormat::Protobuf
            | InputFormat::SchemaRegistryProtobuf
            | InputFormat::SchemaRegistryJson => Some(Layout::Delimited),
        }
    }
}

/// What `--format` expects, for the message of a record that is not in it.
pub fn expected_form(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Json => {
            "--format json expects proto3 JSON: one event per line, or length-delimited \
             JSON values"
        }
        InputFormat::Protobuf => {
            "--format protobuf expects length-delimited records (a varint length, then a \
             protobuf ConversationEvent)"
        }
        InputFormat::SchemaRegistryProtobuf => {
            "--format schema-registry-protobuf expects length-delimited records, each a \
             Schema Registry header (magic byte 0 and a 4-byte schema id, or 1 and a 16-byte \
             GUID), message indexes, then a protobuf ConversationEvent"
        }
        InputFormat::SchemaRegistryJson => {
            "--format schema-registry-json expects length-delimited records, each a Schema \
             Registry header (magic byte 0 and a 4-byte schema id, or 1 and a 16-byte GUID), \
             then proto3 JSON"
        }
        InputFormat::Auto => {
            "--format auto expects proto3 JSON lines, or length-delimited records each JSON, \
             raw protobuf or Schema Registry framed"
        }
    }
}

/// Reads and decodes records; blank JSON lines are counted and skipped.
pub struct Records<'a> {
    format: InputFormat,
    input: Box<dyn BufRead + 'a>,
    /// Decided on the first read for `auto`.
    layout: Option<Layout>,
    line: Vec<u8>,
    /// Lines (JSON) or records (length-delimited) read so far.
    pub count: u64,
    done: bool,
    /// A length-delimited file that starts with `{` (JSON lines read with a binary format).
    starts_with_brace: bool,
    /// Records decoded, by the wire format they were read as.
    pub formats: BTreeMap<&'static str, u64>,
}

impl<'a> Records<'a> {
    pub fn new(format: InputFormat, input: &'a mut dyn BufRead) -> Records<'a> {
        Records {
            format,
            input: Box::new(input),
            layout: Layout::of(format),
            line: Vec::new(),
            count: 0,
            done: false,
            starts_with_brace: false,
            formats: BTreeMap::new(),
        }
    }

    /// The file's layout (for `auto`: known after the first record).
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// `auto`: reads up to the first non-blank line, decides, and puts the bytes back.
    fn detect(&mut self) -> io::Result<Layout> {
        let mut head = Vec::new();
        let mut layout = Layout::Lines; // an empty or blank file has no records either way
        loop {
            let start = head.len();
            if self.input.read_until(b'\n', &mut head)? == 0 {
                break;
            }
            let line = &head[start..];
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            if !starts_json_object(line) {
                layout = Layout::Delimited;
            }
            break;
        }
        let rest = std::mem::replace(&mut self.input, Box::new(io::empty()));
        self.input = Box::new(Cursor::new(head).chain(rest));
        Ok(layout)
    }

    /// The next record, `None` at the end; I/O errors of the input are fatal, a truncated
    /// or oversized length-delimited record is rejected and ends the input (framing is
    /// lost).
    pub fn next_record(&mut self) -> io::Result<Option<Result<Decoded, Rejected>>> {
        if self.done {
            return Ok(None);
        }
        let layout = match self.layout {
            Some(l) => l,
            None => {
                let l = self.detect()?;
                self.layout = Some(l);
                l
            }
        };
        if layout == Layout::Delimited && self.count == 0 {
            self.starts_with_brace = self.input.fill_buf()?.first() == Some(&b'{');
        }
        match layout {
            Layout::Lines => loop {
                self.line.clear();
                if self.input.read_until(b'\n', &mut self.line)? == 0 {
                    return Ok(None);
                }
                while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    self.line.pop();
                }
                self.count += 1;
                if self.line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                let line = std::mem::take(&mut self.line);
                let r = self.decode(&line);
                self.line = line;
                return Ok(Some(r));
            },
            Layout::Delimited => match read_delimited(&mut self.input) {
                Ok(Some(buf)) => {
                    self.count += 1;
                    Ok(Some(self.decode(&buf)))
                }
                Ok(None) => Ok(None),
                Err(e)
                    if e.kind() == io::ErrorKind::InvalidData
                        || e.kind() == io::ErrorKind::UnexpectedEof =>
                {
                    self.done = true;
                    self.count += 1;
                    Ok(Some(Err(Rejected {
                        what: "record",
                        number: self.count,
                        reason: "framing",
                        detail: format!("{e}; {}", self.expected()),
                        ticket_id: None,
                    })))
                }
                Err(e) => Err(e),
            },
        }
    }

    fn decode(&mut self, bytes: &[u8]) -> Result<Decoded, Rejected> {
        match framing::decode_record(bytes, None, self.format) {
            Ok((wire, d)) => {
                *self.formats.entry(wire.as_str()).or_default() += 1;
                Ok(d)
            }
            Err(unread) => {
                let mut r = self.rejected(&unread.error);
                r.ticket_id = ticket_of_json(bytes);
                Err(r)
            }
        }
    }

    /// What the format expects, and a hint when the file looks like JSON lines.
    fn expected(&self) -> String {
        let mut s = expected_form(self.format).to_string();
        if self.starts_with_brace {
            s.push_str(" (the file starts with '{': JSON lines? try --format json or auto)");
        }
        s
    }

    fn rejected(&self, e: &DecodeError) -> Rejected {
        let detail = match e {
            // The record is not in the expected form: say which form that is.
            DecodeError::Undecodable { .. } | DecodeError::Unrecognised(_) => {
                format!("{e}; {}", self.expected())
            }
            _ => e.to_string(),
        };
        Rejected {
            what: if self.layout == Some(Layout::Lines) {
                "line"
            } else {
                "record"
            },
            number: self.count,
            reason: e.reason(),
            detail,
            ticket_id: None,
        }
    }
}

/// The ticket id of a record that did not decode, if it is readable JSON naming one.
fn ticket_of_json(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let id = v.get("ticketId").or_else(|| v.get("ticket_id"))?;
    id.as_str().map(str::to_string)
}

/// Whether a line starts a JSON object: `{`, then after blanks `"` or `}`.
fn starts_json_object(line: &[u8]) -> bool {
    let mut rest = line.iter().copied().skip_while(|b| b.is_ascii_whitespace());
    if rest.next() != Some(b'{') {
        return false;
    }
    matches!(
        rest.find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')),
        Some(b'"' | b'}')
    )
}

/// Reads one length-delimited record.
fn read_delimited(r: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    let mut shift = 0;
    loop {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            return if shift == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "truncated length prefix",
                ))
            };
        }
        len |= ((b[0] & 0x7f) as u64) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "length prefix too long",
            ));
        }
    }
    if len > 16 * 1024 * 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record of {len} bytes exceeds 16 MiB"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("truncated record: its length prefix says {len} bytes"),
            )
        } else {
            e
        }
    })?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_lines_are_recognised_and_a_delimited_brace_is_not() {
        assert!(starts_json_object(b"{\"eventId\":\"a\"}"));
        assert!(starts_json_object(b"  { \"eventId\":\"a\"}"));
        assert!(starts_json_object(b"{}"));
        // An object is never split over lines in JSON lines; a lone '{' is a length byte.
        assert!(!starts_json_object(b"{\n"));
        // A 123-byte length-delimited record: '{' then a protobuf tag, JSON or magic byte.
        assert!(!starts_json_object(b"{\x0a\x02e1"));
        assert!(!starts_json_object(b"{{\"eventId\":\"a\"}"));
        assert!(!starts_json_object(b"{\x00\x00\x00\x00\x01"));
        assert!(!starts_json_object(b"\x9a\x01\x0a"));
    }
}
