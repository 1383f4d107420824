//! Redaction: strings that look like secrets are replaced before anything
//! is recorded, because the record is copied to every member's disk and
//! into the report.
//!
//! The patterns are the common shapes of credentials in command output and
//! logs; they err on the side of redacting (a `tokens=5` is redacted too).
//! Each pattern names the part that is secret; the rest (the key name, the
//! `Bearer` word, the URL's user and host) stays, so a reader still sees
//! what was there.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a secret is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// One shape of secret: the match is replaced by the marker, keeping the
/// named groups `pre` and `post` around it.
struct Pattern {
    re: Regex,
}

/// Compiled once, on first use.
static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    [
        // A PEM private key block; a block cut short (by the capture's cut)
        // is redacted to the end, and a tail that starts inside one from
        // its start.
        r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
        r"\A[A-Za-z0-9+/=\r\n]{16,}-----END [A-Z0-9 ]*PRIVATE KEY-----",
        // Credentials in a URL: scheme://user:password@host.
        r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(?P<post>@)",
        // Authorization headers and bearer tokens.
        r"(?i)(?P<pre>\bauthorization[ \t]*[:=][ \t]*(?:basic|token|digest)[ \t]+)[^\s'\x22]+",
        r"(?i)(?P<pre>\bbearer[ \t]+)[A-Za-z0-9\-._~+/]{8,}=*",
        // Well-known token formats.
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
        r"\bgithub_pat_[A-Za-z0-9_]{22,}\b",
        r"\bxox[bpars]-[A-Za-z0-9-]{10,}",
        r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        // `password=...`, `api_key: ...`, `"secret": "..."`, `DB_PASSWORD=...`.
        r#"(?i)(?P<pre>\b[A-Za-z0-9_.-]*(?:passw(?:or)?d|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[A-Za-z0-9_.-]*["']?[ \t]*[:=][ \t]*)(?:"[^"\n]*"|'[^'\n]*'|[^\s"',;&]+)"#,
    ]
    .into_iter()
    .map(|p| Pattern {
        re: Regex::new(p).expect("the redaction patterns compile"),
    })
    .collect()
});

/// `text` with every secret replaced by [`REDACTED`], and how many were.
/// A pure function of the text; a secret already replaced by an earlier
/// pattern is not counted twice.
pub fn redact(text: &str) -> (String, usize) {
    let mut out = text.to_string();
    let mut count = 0;
    for p in PATTERNS.iter() {
        if !p.re.is_match(&out) {
            continue;
        }
        out =
            p.re.replace_all(&out, |c: &Captures<'_>| {
                let whole = c.get(0).map(|m| m.as_str()).unwrap_or("");
                let pre = c.name("pre").map(|m| m.as_str()).unwrap_or("");
                let post = c.name("post").map(|m| m.as_str()).unwrap_or("");
                let secret = whole
                    .strip_prefix(pre)
                    .and_then(|s| s.strip_suffix(post))
                    .unwrap_or(whole);
                if secret == REDACTED {
                    return whole.to_string();
                }
                count += 1;
                format!("{pre}{REDACTED}{post}")
            })
            .into_owned();
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_counted() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----";
        let cases: Vec<(String, &str, usize)> = vec![
            ("nothing secret here".into(), "nothing secret here", 0),
            ("password=hunter2".into(), "password=[REDACTED]", 1),
            (
                "login ok; passwd: s3cr3t now".into(),
                "login ok; passwd: [REDACTED] now",
                1,
            ),
            (
                "DB_PASSWORD=abc MYSQL_PWD=x".into(),
                "DB_PASSWORD=[REDACTED] MYSQL_PWD=x",
                1,
            ),
            (
                "secret=xyz&token=abc".into(),
                "secret=[REDACTED]&token=[REDACTED]",
                2,
            ),
            ("api_key: 123abc".into(), "api_key: [REDACTED]", 1),
            ("apikey=1,x=2".into(), "apikey=[REDACTED],x=2", 1),
            (
                r#"{"password": "p a s s", "user": "bob"}"#.into(),
                r#"{"password": [REDACTED], "user": "bob"}"#,
                1,
            ),
            ("client_secret='x y'".into(), "client_secret=[REDACTED]", 1),
            ("Password:\nnext line".into(), "Password:\nnext line", 0),
            (
                "Authorization: Bearer abcdefghijkl.mnop".into(),
                "Authorization: Bearer [REDACTED]",
                1,
            ),
            (
                "curl -H 'Authorization: Basic dXNlcjpwYXNz'".into(),
                "curl -H 'Authorization: Basic [REDACTED]'",
                1,
            ),
            (
                "key AKIAIOSFODNN7EXAMPLE used".into(),
                "key [REDACTED] used",
                1,
            ),
            ("ASIAABCDEFGHIJKLMNOP".into(), "[REDACTED]", 1),
            ("AKIA1234 is too short".into(), "AKIA1234 is too short", 0),
            (
                format!("gh token ghp_{}", "a".repeat(36)),
                "gh token [REDACTED]",
                1,
            ),
            (format!("github_pat_{}", "B".repeat(40)), "[REDACTED]", 1),
            ("xoxb-1234567890-abcdef".into(), "[REDACTED]", 1),
            (
                "slack xoxp-12345-67890-abc ok".into(),
                "slack [REDACTED] ok",
                1,
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_x-y".into(),
                "jwt [REDACTED]",
                1,
            ),
            (
                "postgres://app:s3cret@db:5432/x".into(),
                "postgres://app:[REDACTED]@db:5432/x",
                1,
            ),
            (
                "https://example.com/a:b@c".into(),
                "https://example.com/a:b@c",
                0,
            ),
            (
                format!("before\n{pem}\nafter"),
                "before\n[REDACTED]\nafter",
                1,
            ),
            (
                "x\n-----BEGIN PRIVATE KEY-----\nMIIE (cut".into(),
                "x\n[REDACTED]",
                1,
            ),
            (
                "MIIEowIBAAKCAQEA1234abcd\n-----END PRIVATE KEY-----\nrest".into(),
                "[REDACTED]\nrest",
                1,
            ),
            // Replaced once, counted once, even when two patterns match.
            (
                format!("token=ghp_{}", "z".repeat(36)),
                "token=[REDACTED]",
                1,
            ),
            ("password=[REDACTED]".into(), "password=[REDACTED]", 0),
        ];
        let mut failures = Vec::new();
        for (input, want, n) in &cases {
            let got = redact(input);
            if (got.0.as_str(), got.1) != (*want, *n) {
                failures.push(format!("{input:?}: want ({want:?}, {n}), got {got:?}"));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }
}
