//! One budget for the memory of every inbound message being read or put
//! back together from parts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes all inbound messages being read may hold together. A message
/// takes its share as its bytes arrive (never a length it announces, so a
/// stalled stream holds only what it sent); one that would go over waits
/// for nobody: it is refused (not the sender's fault, nobody is blamed).
#[derive(Clone, Debug)]
pub struct InboundBudget {
    left: Arc<AtomicUsize>,
}

impl InboundBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> InboundBudget {
        InboundBudget {
            left: Arc::new(AtomicUsize::new(bytes)),
        }
    }

    /// Bytes not reserved now.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Relaxed)
    }

    pub(crate) fn reserve(&self, bytes: usize) -> Option<Reserved> {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                l.checked_sub(bytes)
            })
            .ok()
            .map(|_| Reserved {
                budget: self.clone(),
                bytes,
            })
    }
}

/// A share of the [`InboundBudget`], given back when dropped.
pub(crate) struct Reserved {
    budget: InboundBudget,
    bytes: usize,
}

impl Reserved {
    /// Takes `more` bytes of the budget too, if they are free now.
    pub(crate) fn grow(&mut self, more: usize) -> bool {
        let taken = self
            .budget
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(more))
            .is_ok();
        if taken {
            self.bytes += more;
        }
        taken
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}
