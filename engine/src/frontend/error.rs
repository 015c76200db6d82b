//! Errors a person can act on: what is wrong, where (`file:line:col`) and,
//! where there is one, what to do.

use std::fmt;

/// A position in a Dockerfile: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// An error in a Dockerfile (or an ignore file), with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendError {
    /// The file's name as the user gave it; `None` until the caller knows it.
    pub file: Option<String>,
    pub location: Location,
    /// One line saying what is wrong.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
}

impl FrontendError {
    pub fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        FrontendError {
            file: None,
            location: Location { line, column },
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().unwrap_or("Dockerfile");
        write!(
            f,
            "{}:{}:{}: {}",
            file, self.location.line, self.location.column, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for FrontendError {}

/// The closest of `candidates` to `word` (case-insensitive), if it is close
/// enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(&w, &c.to_ascii_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    // Allow roughly one edit in three characters, at least one.
    let limit = (w.chars().count().max(c.len()) / 3).max(1);
    (d <= limit && d > 0).then_some(c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let c = ["RUN", "COPY", "WORKDIR", "ENTRYPOINT"];
        assert_eq!(suggest("RUNN", &c), Some("RUN"));
        assert_eq!(suggest("workdri", &c), Some("WORKDIR"));
        assert_eq!(suggest("ENTRYPONT", &c), Some("ENTRYPOINT"));
        assert_eq!(suggest("XYZZY", &c), None);
        assert_eq!(suggest("RUN", &c), None);
    }

    #[test]
    fn renders_file_line_col() {
        let e =
            FrontendError::new(7, 1, "unknown instruction \"RUNN\"").with_hint("did you mean RUN?");
        assert_eq!(
            e.to_string(),
            "Dockerfile:7:1: unknown instruction \"RUNN\" (did you mean RUN?)"
        );
        assert_eq!(
            e.in_file("x/Dockerfile.dev").to_string().split(':').next(),
            Some("x/Dockerfile.dev")
        );
    }
}
