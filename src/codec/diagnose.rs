//! Names the field behind a JSON decode failure. The generated deserializer reports a bad
//! timestamp as e.g. "premature end of input" (a space instead of `T`), which names neither
//! the field nor the form it expects; rule 9 wants both.
use super::DecodeError;
use crate::core::time::Ts;

/// The expected form of `occurred_at`, as error messages state it.
pub const TIMESTAMP_FORM: &str =
    "an RFC 3339 timestamp such as \"2024-03-04T10:00:00Z\" or \"2024-03-04T18:00:00+08:00\"";

/// When `bytes` is a JSON object whose `occurredAt` / `occurred_at` is a string that is not
/// an RFC 3339 timestamp, the error saying so; `None` otherwise (the generic error stands).
pub fn timestamp_error(bytes: &[u8]) -> Option<DecodeError> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let (field, value) = ["occurredAt", "occurred_at"]
        .iter()
        .find_map(|f| v.get(*f).map(|x| (*f, x)))?;
    let s = value.as_str()?;
    if Ts::parse_rfc3339(s).is_ok() {
        return None;
    }
    let zone = s.ends_with(['Z', 'z'])
        || s.get(s.len().saturating_sub(6)..)
            .is_some_and(|t| t.contains(['+', '-']));
    let hint = match (zone, s.as_bytes().get(10)) {
        (false, Some(b' ')) => {
            " (write 'T' between date and time, and end with 'Z' or an offset like +08:00)"
        }
        (false, _) => " (no time zone: end with 'Z' or an offset like +08:00)",
        (true, Some(b' ')) => " (write 'T' between date and time)",
        _ => "",
    };
    Some(DecodeError::InvalidValue(format!(
        "{field} {s:?} is not {TIMESTAMP_FORM}{hint}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_instead_of_t_names_the_field_and_the_form() {
        let e = timestamp_error(
            br#"{"eventId":"e","ticketId":"t","occurredAt":"2024-03-04 10:00:00","resolved":{}}"#,
        )
        .unwrap();
        assert_eq!(e.reason(), "invalid_value");
        let text = e.to_string();
        assert!(
            text.contains("occurredAt \"2024-03-04 10:00:00\""),
            "{text}"
        );
        assert!(text.contains("RFC 3339"), "{text}");
        assert!(text.contains("write 'T' between date and time"), "{text}");
        let e = timestamp_error(br#"{"occurred_at":"2024-03-04T10:00:00"}"#).unwrap();
        assert!(e.to_string().contains("no time zone"), "{e}");
        assert!(timestamp_error(br#"{"occurredAt":"2024-03-04T10:00:00Z"}"#).is_none());
        assert!(timestamp_error(b"not json").is_none());
    }
}
