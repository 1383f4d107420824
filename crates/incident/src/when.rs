//! Times typed at the prompt: when impact began (`symptom ... --since`) and
//! when a follow-up is due (`followup ... --due`). Pure: the edit's time is
//! given, never read from a clock.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

const MS_PER_DAY: i64 = 86_400_000;

/// A time or date that could not be read; names the value and the forms
/// that are accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// `--since` was neither HH:MM nor RFC 3339.
    #[error("`{0}` is not a time: give HH:MM (UTC, today; a time later than now means yesterday) or RFC 3339 like 2026-12-01T02:41:00Z")]
    Since(String),
    /// `--since` lies in the future.
    #[error("`{0}` is in the future: impact cannot begin after the symptom is recorded")]
    Future(String),
    /// `--due` was neither a date nor a duration.
    #[error("`{0}` is not a due date: give YYYY-MM-DD or a duration from now like 3d or 2w")]
    Due(String),
}

/// When impact began, in ms since the Unix epoch, from `HH:MM` (UTC, on
/// the day of `now_ms`, or the day before when that would be later than
/// `now_ms`) or an RFC 3339 time (any offset).
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let t = text.trim();
    let bad = || TimeError::Since(t.chars().take(40).collect());
    if let Some((h, m)) = t.split_once(':').filter(|_| t.len() <= 5) {
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || m.len() != 2 || !digits(m) {
            return Err(bad());
        }
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        let day = now_ms.div_euclid(MS_PER_DAY) * MS_PER_DAY;
        let at = day + (h * 60 + m) * 60_000;
        return Ok(if at > now_ms { at - MS_PER_DAY } else { at });
    }
    let at = OffsetDateTime::parse(t, &Rfc3339).map_err(|_| bad())?;
    let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())?;
    if ms > now_ms {
        return Err(TimeError::Future(t.chars().take(40).collect()));
    }
    Ok(ms)
}

/// The date a follow-up is due, as `YYYY-MM-DD`, from that form or from a
/// number of days or weeks after `now_ms` (`3d`, `2w`).
pub fn parse_due(text: &str, now_ms: i64) -> Result<String, TimeError> {
    let t = text.trim();
    let bad = || TimeError::Due(t.chars().take(40).collect());
    if let Some(date) = parse_date(t) {
        return Ok(format_date(date));
    }
    let unit = match t.chars().last() {
        Some('d') => 1,
        Some('w') => 7,
        _ => return Err(bad()),
    };
    let n: i64 = t
        .strip_suffix(['d', 'w'])
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .filter(|n| *n <= 3660)
        .ok_or_else(bad)?;
    let ms = now_ms + n * unit * MS_PER_DAY;
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(|t| format_date(t.date()))
        .map_err(|_| bad())
}

/// Whether `s` is a date as [`parse_due`] stores it (`YYYY-MM-DD`).
pub fn is_date(s: &str) -> bool {
    parse_date(s).is_some_and(|d| format_date(d) == s)
}

fn parse_date(s: &str) -> Option<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt).ok()
}

fn format_date(d: Date) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    d.format(&fmt).unwrap_or_default()
}

/// A span of time as a postmortem reader wants it: `45s`, `12m`, `1h 05m`,
/// `2d 03h`; negative spans get a minus sign.
pub fn span(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", span(ms.saturating_neg()));
    }
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01 03:00:00 UTC.
    const NOW: i64 = 1_796_094_000_000;
    const MIN: i64 = 60_000;

    #[test]
    fn since_reads_clock_times_and_rfc3339() {
        let cases: &[(&str, Result<i64, &str>)] = &[
            ("02:41", Ok(NOW - 19 * MIN)),
            (" 2:41 ", Ok(NOW - 19 * MIN)),
            ("03:00", Ok(NOW)),
            // Later than now: yesterday.
            ("03:01", Ok(NOW - 24 * 60 * MIN + MIN)),
            ("23:59", Ok(NOW - 3 * 60 * MIN - MIN)),
            ("00:00", Ok(NOW - 3 * 60 * MIN)),
            ("2026-12-01T02:41:00Z", Ok(NOW - 19 * MIN)),
            ("2026-12-01T03:41:00+01:00", Ok(NOW - 19 * MIN)),
            ("2026-12-01T02:41:30.5Z", Ok(NOW - 19 * MIN + 30_500)),
            ("24:00", Err("`24:00` is not a time: give HH:MM")),
            ("02:60", Err("`02:60` is not a time")),
            ("2:5", Err("`2:5` is not a time")),
            ("0241", Err("`0241` is not a time")),
            ("yesterday", Err("or RFC 3339")),
            ("", Err("`` is not a time")),
            ("2026-12-01 02:41", Err("is not a time")),
            (
                "2026-12-01T04:00:00Z",
                Err("`2026-12-01T04:00:00Z` is in the future"),
            ),
        ];
        for (input, want) in cases {
            let got = parse_since(input, NOW).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{input:?}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{input:?}: {g}"),
                _ => panic!("{input:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn due_reads_dates_and_days_or_weeks_from_now() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("2026-12-15", Ok("2026-12-15")),
            ("3d", Ok("2026-12-04")),
            ("2w", Ok("2026-12-15")),
            ("0d", Ok("2026-12-01")),
            (
                "2026-02-30",
                Err("`2026-02-30` is not a due date: give YYYY-MM-DD or a duration"),
            ),
            ("3m", Err("`3m` is not a due date")),
            ("d", Err("`d` is not a due date")),
            ("-3d", Err("`-3d` is not a due date")),
            ("next week", Err("like 3d or 2w")),
            ("99999d", Err("is not a due date")),
        ];
        for (input, want) in cases {
            let got = parse_due(input, NOW).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "{input:?}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{input:?}: {g}"),
                _ => panic!("{input:?}: want {want:?}, got {got:?}"),
            }
        }
        assert!(is_date("2026-12-15"));
        assert!(!is_date("2026-12-5") && !is_date("soon") && !is_date("2026-13-01"));
    }

    #[test]
    fn spans_read_like_a_postmortem() {
        let cases = [
            (0, "0s"),
            (59_999, "59s"),
            (60_000, "1m"),
            (19 * MIN + 59_000, "19m"),
            (65 * MIN, "1h 05m"),
            (25 * 60 * MIN, "1d 01h"),
            (-5 * MIN, "-5m"),
            // A forged `since` cannot make the report overflow.
            (i64::MIN, "-106751991167d 07h"),
        ];
        for (ms, want) in cases {
            assert_eq!(span(ms), want, "{ms}");
        }
    }
}
