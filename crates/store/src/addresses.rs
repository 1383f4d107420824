//! The address book: where each member was last reachable, kept across
//! restarts so a node finds its room again without anyone typing `connect`.
//!
//! It is a cache of what the network told us (joins, identify, mDNS, other
//! members): losing it costs a `connect`, never data, so a damaged file is
//! reported, set aside and started afresh.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Addresses kept per member; the newest first.
pub const ADDRESSES_PER_MEMBER: usize = 16;
/// Members kept; the least recently seen go first.
pub const MEMBERS_KEPT: usize = 1024;

/// What is known of one member's whereabouts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Whereabouts {
    /// Multiaddrs, newest first, each ending in `/p2p/<peer id>`.
    pub addresses: Vec<String>,
    /// When an address was last learned, ms since the Unix epoch.
    pub seen_ms: i64,
}

/// Every member's last known addresses, by hex public key.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AddressBook {
    /// By hex public key.
    pub members: BTreeMap<String, Whereabouts>,
}

impl AddressBook {
    /// Records addresses of `key` learned at `now_ms`, newest first; returns
    /// whether anything changed (so unchanged news is not written again).
    pub fn learn(&mut self, key: &str, addresses: &[String], now_ms: i64) -> bool {
        if addresses.is_empty() {
            return false;
        }
        let entry = self.members.entry(key.to_string()).or_default();
        let before = entry.addresses.clone();
        let mut merged: Vec<String> = Vec::with_capacity(ADDRESSES_PER_MEMBER);
        for a in addresses.iter().chain(before.iter()) {
            if !merged.contains(a) && merged.len() < ADDRESSES_PER_MEMBER {
                merged.push(a.clone());
            }
        }
        let changed = merged != before;
        entry.addresses = merged;
        if changed {
            entry.seen_ms = now_ms;
        }
        if self.members.len() > MEMBERS_KEPT {
            if let Some(oldest) = self
                .members
                .iter()
                .min_by_key(|(_, w)| w.seen_ms)
                .map(|(k, _)| k.clone())
            {
                self.members.remove(&oldest);
            }
        }
        changed
    }

    /// The addresses known for `key`, newest first.
    pub fn addresses(&self, key: &str) -> &[String] {
        self.members
            .get(key)
            .map(|w| w.addresses.as_slice())
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> String {
        format!("/ip4/10.0.0.1/tcp/{s}")
    }

    #[test]
    fn learning_puts_the_newest_first_and_reports_change() {
        let mut book = AddressBook::default();
        assert!(book.learn("k", &[a("1")], 10));
        assert!(!book.learn("k", &[a("1")], 20), "nothing new");
        assert_eq!(book.members["k"].seen_ms, 10);
        assert!(
            book.learn("k", &[a("2")], 30),
            "a node restarted on a new port"
        );
        assert_eq!(book.addresses("k"), &[a("2"), a("1")]);
        assert!(
            book.learn("k", &[a("1")], 40),
            "the old one is newest again"
        );
        assert_eq!(book.addresses("k"), &[a("1"), a("2")]);
        assert!(!book.learn("k", &[], 50));
        assert!(book.addresses("other").is_empty());
    }

    #[test]
    fn addresses_and_members_are_capped() {
        let mut book = AddressBook::default();
        let many: Vec<String> = (0..40).map(|i| a(&i.to_string())).collect();
        book.learn("k", &many, 1);
        assert_eq!(book.addresses("k").len(), ADDRESSES_PER_MEMBER);
        assert_eq!(book.addresses("k")[0], a("0"));
        for i in 0..MEMBERS_KEPT + 5 {
            book.learn(&format!("m{i}"), &[a("1")], 100 + i as i64);
        }
        assert_eq!(book.members.len(), MEMBERS_KEPT);
        assert!(
            !book.members.contains_key("k"),
            "least recently seen went first"
        );
        assert!(book.members.contains_key(&format!("m{}", MEMBERS_KEPT + 4)));
    }

    #[test]
    fn round_trips_as_json() {
        let mut book = AddressBook::default();
        book.learn("k", &[a("1")], 5);
        let json = serde_json::to_string(&book).unwrap();
        assert_eq!(serde_json::from_str::<AddressBook>(&json).unwrap(), book);
    }
}
