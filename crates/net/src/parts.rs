//! Messages too large for one stream, cut into [`Part`]s and put back
//! together, with the limits that keep a peer from holding memory with
//! parts it never finishes.

use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;

use crate::budget::{InboundBudget, Reserved};
use crate::wire::{Part, PART_BYTES};

/// How long a half-sent transfer is kept without a new part.
pub(crate) const TRANSFER_IDLE: Duration = Duration::from_secs(30);
/// Transfers one peer may have half-sent to us, and we to it, at once.
pub(crate) const TRANSFERS_PER_PEER: usize = 4;

/// `bytes` cut into parts of [`PART_BYTES`], or `None` if they fit whole.
pub(crate) fn split(bytes: &[u8], transfer: u64) -> Option<Vec<Part>> {
    if bytes.len() <= PART_BYTES {
        return None;
    }
    let count = bytes.len().div_ceil(PART_BYTES) as u32;
    Some(
        bytes
            .chunks(PART_BYTES)
            .enumerate()
            .map(|(i, c)| Part {
                transfer,
                index: i as u32,
                count,
                bytes: ByteBuf::from(c.to_vec()),
            })
            .collect(),
    )
}

/// A message being received in parts.
pub(crate) struct Assembly {
    count: u32,
    next: u32,
    bytes: Vec<u8>,
    touched: Instant,
    _held: Option<Reserved>,
}

impl Assembly {
    /// Starts from part 0, refusing a message that would exceed `max`
    /// bytes or the budget. Errors say what the sender did wrong; `Ok(Err)`
    /// is a local refusal (the budget), nobody's fault.
    pub(crate) fn start(
        first: Part,
        max: usize,
        budget: Option<&InboundBudget>,
    ) -> Result<Result<Assembly, String>, String> {
        if first.index != 0 {
            return Err(format!(
                "part {} of transfer {:016x} came before its first part",
                first.index, first.transfer
            ));
        }
        let announced = first.count as usize * PART_BYTES;
        if first.count < 2 || announced > max.saturating_add(PART_BYTES) {
            return Err(format!(
                "a message in {} parts (up to {announced} bytes) exceeds the limit of {max}",
                first.count
            ));
        }
        let mut a = Assembly {
            count: first.count,
            next: 0,
            bytes: Vec::new(),
            touched: Instant::now(),
            _held: None,
        };
        if let Some(b) = budget {
            match b.reserve(0) {
                Some(r) => a._held = Some(r),
                None => return Ok(Err("what inbound messages may hold is used up".into())),
            }
        }
        match a.add(first, max) {
            Ok(Ok(None)) => Ok(Ok(a)),
            Ok(Ok(Some(_))) => unreachable!("count >= 2"),
            Ok(Err(local)) => Ok(Err(local)),
            Err(e) => Err(e),
        }
    }

    /// Adds the next part; `Some(bytes)` when the message is whole.
    pub(crate) fn add(
        &mut self,
        part: Part,
        max: usize,
    ) -> Result<Result<Option<Vec<u8>>, String>, String> {
        if part.index != self.next || part.count != self.count {
            return Err(format!(
                "part {} of {} of transfer {:016x} came where part {} of {} was due",
                part.index, part.count, part.transfer, self.next, self.count
            ));
        }
        let last = part.index + 1 == self.count;
        if part.bytes.len() > PART_BYTES || (!last && part.bytes.len() != PART_BYTES) {
            return Err(format!(
                "part {} of transfer {:016x} holds {} bytes (every part but the last holds {PART_BYTES})",
                part.index,
                part.transfer,
                part.bytes.len()
            ));
        }
        if self.bytes.len() + part.bytes.len() > max {
            return Err(format!(
                "a message in parts exceeds the limit of {max} bytes"
            ));
        }
        if let Some(r) = self._held.as_mut() {
            if !r.grow(part.bytes.len()) {
                return Ok(Err("what inbound messages may hold is used up".into()));
            }
        }
        self.bytes.extend_from_slice(&part.bytes);
        self.next += 1;
        self.touched = Instant::now();
        Ok(Ok(last.then(|| std::mem::take(&mut self.bytes))))
    }

    /// The part wanted next.
    pub(crate) fn next(&self) -> u32 {
        self.next
    }

    /// Whether the sender let it lie longer than [`TRANSFER_IDLE`].
    pub(crate) fn idle(&self, now: Instant) -> bool {
        now.duration_since(self.touched) > TRANSFER_IDLE
    }
}

/// Puts a message back together from a CBOR array of parts, as the node
/// does part by part (for fuzzing and for independent implementations to
/// test against).
pub fn assemble<T: serde::de::DeserializeOwned>(data: &[u8], max: usize) -> Result<T, String> {
    let parts: Vec<Part> = crate::wire::from_cbor(data)?;
    let mut parts = parts.into_iter();
    let first = parts.next().ok_or("no parts")?;
    let mut a = Assembly::start(first, max, None)??;
    for p in parts {
        if let Some(bytes) = a.add(p, max)?? {
            return crate::wire::from_cbor(&bytes);
        }
    }
    Err(format!("only {} parts arrived", a.next()))
}

/// A large response of ours, its parts waiting to be fetched.
pub(crate) struct Serving {
    pub(crate) parts: Vec<Part>,
    pub(crate) touched: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_cut_into_parts_comes_back_whole() {
        let bytes: Vec<u8> = (0..(PART_BYTES * 2 + 17)).map(|i| i as u8).collect();
        assert!(split(&bytes[..PART_BYTES], 1).is_none());
        let parts = split(&bytes, 9).unwrap();
        assert_eq!(parts.len(), 3);
        let mut it = parts.into_iter();
        let mut a = Assembly::start(it.next().unwrap(), 64 << 20, None)
            .unwrap()
            .unwrap();
        assert_eq!(a.next(), 1);
        assert_eq!(a.add(it.next().unwrap(), 64 << 20), Ok(Ok(None)));
        assert_eq!(a.add(it.next().unwrap(), 64 << 20), Ok(Ok(Some(bytes))));
    }

    #[test]
    fn parts_out_of_order_oversize_or_over_the_limit_are_the_senders_fault() {
        let bytes = vec![1u8; PART_BYTES * 3];
        let parts = split(&bytes, 5).unwrap();
        let err = Assembly::start(parts[1].clone(), 64 << 20, None)
            .err()
            .unwrap();
        assert!(err.contains("before its first part"), "{err}");
        let err = Assembly::start(parts[0].clone(), PART_BYTES, None)
            .err()
            .unwrap();
        assert!(err.contains("exceeds the limit"), "{err}");
        let mut a = Assembly::start(parts[0].clone(), 64 << 20, None)
            .unwrap()
            .unwrap();
        let err = a.add(parts[2].clone(), 64 << 20).unwrap_err();
        assert!(err.contains("where part 1 of 3 was due"), "{err}");
        let mut short = parts[1].clone();
        short.bytes.truncate(10);
        let err = a.add(short, 64 << 20).unwrap_err();
        assert!(err.contains("holds 10 bytes"), "{err}");
    }

    #[test]
    fn parts_take_from_the_budget_and_give_it_back() {
        let budget = InboundBudget::new(PART_BYTES + PART_BYTES / 2);
        let parts = split(&vec![0u8; PART_BYTES * 3], 5).unwrap();
        let mut a = Assembly::start(parts[0].clone(), 64 << 20, Some(&budget))
            .unwrap()
            .unwrap();
        let local = a.add(parts[1].clone(), 64 << 20).unwrap();
        assert!(local.is_err(), "over the budget: refused, nobody blamed");
        drop(a);
        assert_eq!(budget.left(), PART_BYTES + PART_BYTES / 2);
    }
}
