//! The durable outbox: every notification for a receiver is written to the state store
//! (in the same transaction as the dispatcher's notification log) before anything is
//! sent, and removed only once the receiver has acknowledged it or refused it for good.
//! A restart or `kill -9` therefore loses nothing: the runner loads the outbox and
//! delivers what it holds. This type is the in-memory mirror of the `outbox` table; the
//! runner writes every change through `StateStore::notify_write`.

use std::collections::BTreeMap;

use super::Notification;

/// One notification waiting for delivery.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEntry {
    pub notification: Notification,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Not before this time (Unix ns): the backoff after a failed attempt.
    pub next_attempt: i64,
    /// Why the last attempt failed (no secrets: the senders redact URLs).
    pub last_error: Option<String>,
}

impl OutboxEntry {
    pub fn new(notification: Notification) -> OutboxEntry {
        OutboxEntry {
            next_attempt: notification.created,
            notification,
            attempts: 0,
            last_error: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.notification.id
    }
}

/// The pending notifications, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    /// By (created, id): delivery keeps the order in which notifications were made.
    entries: BTreeMap<(i64, String), OutboxEntry>,
}

impl Outbox {
    /// Rebuilds the outbox from the store's rows; a row that does not decode (written by
    /// a future version) is skipped and returned by id, so the caller can say so.
    pub fn from_rows(rows: Vec<(String, Vec<u8>)>) -> (Outbox, Vec<String>) {
        let mut outbox = Outbox::default();
        let mut unreadable = Vec::new();
        for (id, bytes) in rows {
            match serde_json::from_slice::<OutboxEntry>(&bytes) {
                Ok(entry) => outbox.insert(entry),
                Err(_) => unreadable.push(id),
            }
        }
        (outbox, unreadable)
    }

    pub fn insert(&mut self, entry: OutboxEntry) {
        let key = (entry.notification.created, entry.notification.id.clone());
        self.entries.insert(key, entry);
    }

    pub fn remove(&mut self, id: &str) -> Option<OutboxEntry> {
        let key = self.entries.keys().find(|(_, k)| k == id)?.clone();
        self.entries.remove(&key)
    }

    pub fn get(&self, id: &str) -> Option<&OutboxEntry> {
        self.entries.values().find(|e| e.id() == id)
    }

    /// Entries whose time has come at `now`, oldest first, leaving out `busy` ones (in
    /// flight).
    pub fn due(&self, now: i64, busy: &dyn Fn(&str) -> bool) -> Vec<OutboxEntry> {
        self.entries
            .values()
            .filter(|e| e.next_attempt <= now && !busy(e.id()))
            .cloned()
            .collect()
    }

    /// The earliest `next_attempt` of an entry that is not busy.
    pub fn next_due(&self, busy: &dyn Fn(&str) -> bool) -> Option<i64> {
        self.entries
            .values()
            .filter(|e| !busy(e.id()))
            .map(|e| e.next_attempt)
            .min()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pending entries per receiver, for `/metrics` and the status API.
    pub fn depth_by_receiver(&self) -> BTreeMap<String, usize> {
        let mut depth = BTreeMap::new();
        for entry in self.entries.values() {
            *depth
                .entry(entry.notification.receiver.clone())
                .or_insert(0) += 1;
        }
        depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::labels::Labels;

    fn notification(id: &str, receiver: &str, created: i64) -> Notification {
        Notification {
            id: id.into(),
            receiver: receiver.into(),
            group_key: "{}:{}".into(),
            group_labels: Labels::new(),
            alerts: Vec::new(),
            created,
        }
    }

    #[test]
    fn due_entries_come_oldest_first_and_skip_busy_and_backed_off_ones() {
        let mut outbox = Outbox::default();
        outbox.insert(OutboxEntry::new(notification("b", "hook", 20)));
        outbox.insert(OutboxEntry::new(notification("a", "hook", 10)));
        let mut later = OutboxEntry::new(notification("c", "mail", 5));
        later.next_attempt = 100;
        outbox.insert(later);
        let ids = |v: Vec<OutboxEntry>| v.iter().map(|e| e.id().to_string()).collect::<Vec<_>>();
        assert_eq!(ids(outbox.due(50, &|_| false)), ["a", "b"]);
        assert_eq!(ids(outbox.due(50, &|id| id == "a")), ["b"]);
        assert_eq!(ids(outbox.due(100, &|_| false)), ["c", "a", "b"]);
        assert_eq!(outbox.next_due(&|id| id != "c"), Some(100));
        assert_eq!(
            outbox.depth_by_receiver().into_iter().collect::<Vec<_>>(),
            [("hook".to_string(), 2), ("mail".to_string(), 1)]
        );
        assert_eq!(outbox.remove("a").map(|e| e.notification.created), Some(10));
        assert_eq!(outbox.len(), 2);
    }

    #[test]
    fn rows_round_trip_and_unreadable_rows_are_reported() {
        let entry = OutboxEntry::new(notification("x", "hook", 1));
        let rows = vec![
            (
                "x".to_string(),
                serde_json::to_vec(&entry).unwrap_or_default(),
            ),
            ("y".to_string(), b"{not json".to_vec()),
        ];
        let (outbox, unreadable) = Outbox::from_rows(rows);
        assert_eq!(outbox.get("x"), Some(&entry));
        assert_eq!(unreadable, ["y"]);
    }
}
