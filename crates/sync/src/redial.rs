//! When to dial a missing member again: jittered exponential backoff, short
//! enough that a healed link is used again within two seconds.

use std::time::{Duration, Instant};

/// First wait after a member goes missing.
pub const FIRST: Duration = Duration::from_millis(200);
/// Longest wait between two dials of one member: a healed link is found
/// again within this (plus one dial), from either side.
pub const LONGEST: Duration = Duration::from_millis(1_600);

/// The redial schedule of one missing member.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// Missing since.
    pub since: Instant,
    /// Next dial at.
    pub next: Instant,
    delay: Duration,
    /// How many dials so far.
    pub attempts: u32,
    /// What the last failed dial said.
    pub last_error: Option<String>,
}

impl Backoff {
    /// A member found missing at `now`: dial soon.
    pub fn new(now: Instant) -> Backoff {
        Backoff {
            since: now,
            next: now,
            delay: FIRST,
            attempts: 0,
            last_error: None,
        }
    }

    /// Whether a dial is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Records a dial at `now`; `jitter` in [0, 1) spreads members (and
    /// the two sides of one link) apart. The wait doubles up to
    /// [`LONGEST`], and is between half and all of it.
    pub fn dialed(&mut self, now: Instant, jitter: f64) {
        self.attempts += 1;
        let wait = self.delay.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        self.next = now + wait;
        self.delay = (self.delay * 2).min(LONGEST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_are_jittered() {
        let t0 = Instant::now();
        let mut b = Backoff::new(t0);
        assert!(b.due(t0), "a member found missing is dialed at once");
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            b.dialed(now, 1.0);
            waits.push(b.next - now);
            now = b.next;
        }
        assert_eq!(waits[0], FIRST);
        assert_eq!(waits[1], FIRST * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), LONGEST);
        assert_eq!(b.attempts, 8);
    }

    #[test]
    fn jitter_spreads_between_half_and_all_of_the_wait() {
        let t0 = Instant::now();
        let (mut lo, mut hi) = (Backoff::new(t0), Backoff::new(t0));
        lo.dialed(t0, 0.0);
        hi.dialed(t0, 0.999);
        assert_eq!(lo.next - t0, FIRST / 2);
        assert!(hi.next - t0 > FIRST.mul_f64(0.99));
        assert!(!lo.due(t0) && lo.due(t0 + FIRST));
    }

    #[test]
    fn a_healed_link_is_redialed_within_two_seconds_even_after_a_long_outage() {
        let t0 = Instant::now();
        let mut b = Backoff::new(t0);
        let mut now = t0;
        for i in 0..1000 {
            b.dialed(now, (i % 7) as f64 / 7.0);
            assert!(b.next - now <= LONGEST);
            now = b.next;
        }
        assert!(LONGEST < Duration::from_secs(2));
    }
}
