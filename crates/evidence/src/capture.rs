//! Keeping the head and the tail of a stream: the start says what a command
//! was doing, the end how it finished; the middle of a long log is cut and
//! counted.

use std::collections::VecDeque;

use crate::redact::redact;

/// Bytes kept from the start of a stream.
pub const HEAD_BYTES: usize = 16 * 1024;
/// Bytes kept from the end of a stream.
pub const TAIL_BYTES: usize = 16 * 1024;

/// What is recorded of a stream: at most [`HEAD_BYTES`] + [`TAIL_BYTES`]
/// of text (plus a line saying how much was cut), secrets redacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The text: head, `… N bytes cut …` line, tail; redacted.
    pub text: String,
    /// Every byte the stream held.
    pub total_bytes: u64,
    /// Bytes of the stream left out of `text`.
    pub cut_bytes: u64,
    /// How many secrets were replaced by [`crate::REDACTED`].
    pub redactions: usize,
}

/// A stream's head and tail as it goes by; memory stays bounded whatever
/// the stream's length.
#[derive(Debug)]
pub struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    head_cap: usize,
    tail_cap: usize,
}

impl Default for Capture {
    fn default() -> Self {
        Capture::new()
    }
}

impl Capture {
    /// A capture keeping [`HEAD_BYTES`] and [`TAIL_BYTES`].
    pub fn new() -> Capture {
        Capture::with_caps(HEAD_BYTES, TAIL_BYTES)
    }

    /// A capture with other caps (tests).
    pub fn with_caps(head: usize, tail: usize) -> Capture {
        Capture {
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            head_cap: head,
            tail_cap: tail,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_cap.saturating_sub(self.head.len());
        let (to_head, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(to_head);
        bytes = rest;
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail
                .extend(bytes.iter().skip(bytes.len() - self.tail_cap));
            return;
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..over);
        self.tail.extend(bytes);
    }

    /// The recorded text: the head and the tail, cut on character
    /// boundaries, with a line saying how many bytes were left out, and
    /// secrets redacted (in head and tail separately: they are read apart).
    pub fn finish(self) -> Output {
        let kept = self.head.len() as u64 + self.tail.len() as u64;
        let tail: Vec<u8> = self.tail.into_iter().collect();
        if kept == self.total {
            let mut all = self.head;
            all.extend_from_slice(&tail);
            let (text, redactions) = redact(&String::from_utf8_lossy(&all));
            return Output {
                text,
                total_bytes: self.total,
                cut_bytes: 0,
                redactions,
            };
        }
        let head = whole_chars_prefix(&self.head);
        let tail = whole_chars_suffix(&tail);
        let cut = self.total - head.len() as u64 - tail.len() as u64;
        let (head, n1) = redact(&String::from_utf8_lossy(head));
        let (tail, n2) = redact(&String::from_utf8_lossy(tail));
        let newline = if head.ends_with('\n') { "" } else { "\n" };
        Output {
            text: format!("{head}{newline}… {cut} bytes cut …\n{tail}"),
            total_bytes: self.total,
            cut_bytes: cut,
            redactions: n1 + n2,
        }
    }
}

/// `bytes` without a character cut short at its end.
fn whole_chars_prefix(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => bytes.split_at(e.valid_up_to()).0,
        _ => bytes,
    }
}

/// `bytes` without the continuation bytes of a character cut at its start.
fn whole_chars_suffix(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
        .count();
    bytes.split_at(skip).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (chunks pushed, head cap, tail cap, text, cut bytes)
    #[test]
    fn keeps_head_and_tail_and_counts_the_cut() {
        let long = "x".repeat(100);
        let cases: &[(&[&str], usize, usize, &str, u64)] = &[
            (&["short"], 8, 8, "short", 0),
            (&["abcd", "efgh"], 4, 4, "abcdefgh", 0),
            (&["abcdefghij"], 4, 4, "abcd\n… 2 bytes cut …\nghij", 2),
            (
                &["ab", "cd", "ef", "gh", "ij", "kl"],
                4,
                4,
                "abcd\n… 4 bytes cut …\nijkl",
                4,
            ),
            (
                &["line1\n", long.as_str(), "\nend\n"],
                6,
                4,
                "line1\n… 101 bytes cut …\nend\n",
                101,
            ),
            // A character is never split: the cut grows to whole characters.
            (&["aé", "xxxxxxx", "éb"], 2, 2, "a\n… 11 bytes cut …\nb", 11),
            (&[], 4, 4, "", 0),
        ];
        for (chunks, head, tail, want, cut) in cases {
            let mut c = Capture::with_caps(*head, *tail);
            for ch in *chunks {
                c.push(ch.as_bytes());
            }
            let total: usize = chunks.iter().map(|c| c.len()).sum();
            let out = c.finish();
            assert_eq!(out.text, *want, "{chunks:?}");
            assert_eq!(out.cut_bytes, *cut, "{chunks:?}");
            assert_eq!(out.total_bytes, total as u64, "{chunks:?}");
        }
    }

    #[test]
    fn a_huge_stream_stays_within_the_caps() {
        let mut c = Capture::new();
        let chunk = vec![b'x'; 10_000];
        for _ in 0..1_000 {
            c.push(&chunk);
        }
        let out = c.finish();
        assert_eq!(out.total_bytes, 10_000_000);
        assert_eq!(out.cut_bytes, 10_000_000 - (HEAD_BYTES + TAIL_BYTES) as u64);
        assert!(out.text.len() < HEAD_BYTES + TAIL_BYTES + 64);
    }

    #[test]
    fn secrets_are_redacted_in_head_and_tail() {
        let mut c = Capture::with_caps(20, 20);
        c.push(b"token=abc123 middle ");
        c.push(&[b'-'; 50]);
        c.push(b" password=hunter2");
        let out = c.finish();
        assert_eq!(out.redactions, 2, "{}", out.text);
        assert!(!out.text.contains("hunter2") && !out.text.contains("abc123"));
    }
}
