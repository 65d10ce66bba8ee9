//! Records of a replay input: proto3 JSON lines or length-delimited protobuf (varint length
//! prefix, as protobuf's `writeDelimitedTo`), decoded one at a time.
use crate::codec::{self, Decoded, Format};
use std::io::{self, BufRead, Read};

/// One record that did not decode.
pub struct Rejected {
    /// `line` or `record`, with its 1-based number.
    pub what: &'static str,
    pub number: u64,
    pub reason: &'static str,
    pub detail: String,
}

/// Reads and decodes records; blank JSON lines are counted and skipped.
pub struct Records<'a> {
    format: Format,
    input: &'a mut dyn BufRead,
    line: Vec<u8>,
    /// Lines (JSON) or records (protobuf) read so far.
    pub count: u64,
    done: bool,
}

impl<'a> Records<'a> {
    pub fn new(format: Format, input: &'a mut dyn BufRead) -> Records<'a> {
        Records {
            format,
            input,
            line: Vec::new(),
            count: 0,
            done: false,
        }
    }

    /// The next record, `None` at the end; I/O errors of the input are fatal, a truncated
    /// or oversized protobuf record is rejected and ends the input (framing is lost).
    pub fn next_record(&mut self) -> io::Result<Option<Result<Decoded, Rejected>>> {
        if self.done {
            return Ok(None);
        }
        match self.format {
            Format::Json => loop {
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
                return Ok(Some(
                    codec::decode_json(&self.line).map_err(|e| self.rejected(&e)),
                ));
            },
            Format::Protobuf => match read_delimited(self.input) {
                Ok(Some(buf)) => {
                    self.count += 1;
                    Ok(Some(
                        codec::decode_protobuf(&buf).map_err(|e| self.rejected(&e)),
                    ))
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
                        detail: e.to_string(),
                    })))
                }
                Err(e) => Err(e),
            },
        }
    }

    fn rejected(&self, e: &codec::DecodeError) -> Rejected {
        Rejected {
            what: if self.format == Format::Json {
                "line"
            } else {
                "record"
            },
            number: self.count,
            reason: e.reason(),
            detail: e.to_string(),
        }
    }
}

/// Reads one length-delimited protobuf record.
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
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}
