//! Delivered message ids (RX-7): a bounded first-in first-out set, the device's last line against
//! duplicates that the chains cannot see (group messages, restored state).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::ids::MessageId;
use crate::limits::MAX_DELIVERED_IDS;
use crate::persist::Persist;
use crate::records::{ChangeSet, Record, RecordKind, Tracked};

/// The last LIM-7 delivered ids.
#[derive(Clone, Debug, Default)]
pub struct DeliveredIds {
    // position in the first-in first-out order -> id; one record each (RecordKind::DeliveredId)
    order: Tracked<u64, MessageId>,
    set: BTreeSet<MessageId>,
    next: u64,
}

impl DeliveredIds {
    /// Whether `id` was delivered recently.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.set.contains(id)
    }

    /// Records `id`; returns false if it was already there.
    pub fn insert(&mut self, id: MessageId) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.insert(self.next, id);
        self.next = self.next.saturating_add(1);
        while self.order.len() > MAX_DELIVERED_IDS {
            if let Some((_, old)) = self.order.pop_first() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Number of ids remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The ids added or evicted since the last commit.
    pub(crate) fn changes(&self, out: &mut ChangeSet) {
        self.order.changes(RecordKind::DeliveredId, out);
    }

    /// Every id as a record.
    pub(crate) fn records(&self, out: &mut Vec<Record>) {
        self.order.records(RecordKind::DeliveredId, out);
    }

    /// Forgets the marks after a commit.
    pub(crate) fn clear_marks(&mut self) {
        self.order.clear_marks();
    }

    /// The ids from their records (nothing marked): the next position follows the last one.
    pub(crate) fn loaded(order: BTreeMap<u64, MessageId>) -> crate::error::Result<Self> {
        let set: BTreeSet<MessageId> = order.values().copied().collect();
        if set.len() != order.len() || order.len() > MAX_DELIVERED_IDS {
            return Err(crate::error::DecodeError::LengthOutOfRange.into());
        }
        let next = order.keys().next_back().map_or(0, |p| p.saturating_add(1));
        Ok(DeliveredIds {
            order: Tracked::loaded(order),
            set,
            next,
        })
    }
}

impl Persist for DeliveredIds {
    fn write(&self, w: &mut crate::codec::Writer) {
        let order: VecDeque<MessageId> = self.order.values().copied().collect();
        order.write(w);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> crate::error::Result<Self> {
        let order: VecDeque<MessageId> = Persist::read(r)?;
        let mut d = DeliveredIds::default();
        for id in order {
            d.insert(id);
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_rx_7() {
        let mut d = DeliveredIds::default();
        for i in 0..(MAX_DELIVERED_IDS + 10) {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            assert!(d.insert(MessageId(id)));
        }
        assert_eq!(d.len(), MAX_DELIVERED_IDS);
        assert!(!d.contains(&MessageId([0; 16])));
        let mut last = [0u8; 16];
        last[..8].copy_from_slice(&((MAX_DELIVERED_IDS + 9) as u64).to_be_bytes());
        assert!(d.contains(&MessageId(last)));
        assert!(!d.insert(MessageId(last)));
        assert!(!d.is_empty());
        assert!(DeliveredIds::default().is_empty());
    }
}
