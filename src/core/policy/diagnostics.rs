//! Diagnostics of the policy checker: `file:line:column: severity: message` plus an optional
//! fix hint, the way compilers print them. Positions come from byte spans of the TOML source.
use std::fmt;
use std::ops::Range;

/// How bad a diagnostic is: errors make the file unusable, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of the checker. `line` and `column` are 1-based (column in characters);
/// both are 0 when the finding has no position (e.g. the file could not be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
    pub severity: Severity,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `default.toml:42:9: error: unknown matcher "agent_replied"` and, when there is a hint,
    /// a second line `  hint: did you mean "agent_reply"?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.file, self.severity, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.severity, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Renders diagnostics one after the other, each on its own line(s).
pub fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}

/// Collects diagnostics for one source text, turning byte spans into line and column.
pub(crate) struct Sink<'s> {
    source: &'s str,
    file: String,
    line_starts: Vec<usize>,
    diagnostics: Vec<(usize, Diagnostic)>,
}

impl<'s> Sink<'s> {
    pub(crate) fn new(source: &'s str, file: &str) -> Sink<'s> {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Sink {
            source,
            file: file.to_string(),
            line_starts,
            diagnostics: Vec::new(),
        }
    }

    /// 1-based line and character column of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }

    /// The 1-based line of a span, for "first defined at line N" notes.
    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        self.line_col(span.start).0
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        message: String,
        hint: Option<String>,
    ) {
        let (line, column) = self.line_col(span.start);
        let d = Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message,
            hint,
            severity,
        };
        if !self
            .diagnostics
            .iter()
            .any(|(o, e)| *o == span.start && *e == d)
        {
            self.diagnostics.push((span.start, d));
        }
    }

    pub(crate) fn error(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        self.push(Severity::Error, span, message, hint);
    }

    pub(crate) fn warning(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        self.push(Severity::Warning, span, message, hint);
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|(_, d)| d.is_error())
    }

    /// All diagnostics in source order (stable for findings at the same place).
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|(offset, _)| *offset);
        self.diagnostics.into_iter().map(|(_, d)| d).collect()
    }
}

/// Levenshtein distance over characters, case-insensitive.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate nearest to `input`, if it is close enough to be a likely typo
/// (distance at most a third of the input's length, and at least 1 allowed).
pub(crate) fn nearest<'c>(
    input: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (input.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'c str)> = None;
    for c in candidates {
        let d = edit_distance(input, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `did you mean "x"?` when a candidate is near, otherwise `<what>: a, b, c`.
pub(crate) fn suggest<'c>(
    input: &str,
    candidates: impl IntoIterator<Item = &'c str> + Clone,
    what: &str,
) -> String {
    match nearest(input, candidates.clone()) {
        Some(c) => format!("did you mean \"{c}\"?"),
        None => format!("{what}: {}", join(candidates)),
    }
}

pub(crate) fn join<'c>(items: impl IntoIterator<Item = &'c str>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("tagret", "target"), 2);
        assert_eq!(edit_distance("Chat", "chat"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            nearest(
                "agent_replied",
                ["opened", "agent_reply", "agent_reply:eta"]
            ),
            Some("agent_reply")
        );
        assert_eq!(nearest("xyz", ["opened", "closed"]), None);
    }

    #[test]
    fn positions_and_display() {
        let src = "a = 1\nbé = \"x\"\n";
        let mut sink = Sink::new(src, "f.toml");
        let off = src.find("\"x\"").unwrap();
        assert_eq!(sink.line_col(off), (2, 6));
        sink.error(off..off + 3, "bad".into(), Some("fix it".into()));
        let d = sink.finish();
        assert_eq!(d[0].to_string(), "f.toml:2:6: error: bad\n  hint: fix it");
    }
}
