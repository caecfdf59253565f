//! The bounded channel between the sources and the sink stage. Both ends run on
//! blocking threads, so it is a std `sync_channel`: a full channel blocks the sender
//! (backpressure, never a drop) and the receiver waits with a timeout that needs no
//! async runtime — the sink keeps working even while the runtime shuts down. The depth
//! is counted on the side for `/api/v1/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::event::LogBatch;

/// How many batches wait in the channel now, and how many it holds at most.
#[derive(Clone, Debug)]
pub struct QueueDepth {
    depth: Arc<AtomicUsize>,
    capacity: usize,
}

impl QueueDepth {
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[derive(Clone)]
pub struct BatchSender {
    tx: mpsc::SyncSender<LogBatch>,
    depth: Arc<AtomicUsize>,
}

pub struct BatchReceiver {
    rx: mpsc::Receiver<LogBatch>,
    depth: Arc<AtomicUsize>,
}

/// What a timed receive got.
pub enum Received {
    Batch(LogBatch),
    Timeout,
    /// Every sender is gone and the channel is empty.
    Closed,
}

pub fn batch_channel(capacity: usize) -> (BatchSender, BatchReceiver, QueueDepth) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let depth = Arc::new(AtomicUsize::new(0));
    (
        BatchSender {
            tx,
            depth: depth.clone(),
        },
        BatchReceiver {
            rx,
            depth: depth.clone(),
        },
        QueueDepth { depth, capacity },
    )
}

impl BatchSender {
    /// Sends, waiting while the channel is full. Gives the batch back if the receiver
    /// is gone.
    pub fn send(&self, batch: LogBatch) -> Result<(), LogBatch> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.tx.send(batch).map_err(|e| {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            e.0
        })
    }
}

impl BatchReceiver {
    pub fn recv_timeout(&self, timeout: Duration) -> Received {
        match self.rx.recv_timeout(timeout) {
            Ok(batch) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Received::Batch(batch)
            }
            Err(RecvTimeoutError::Timeout) => Received::Timeout,
            Err(RecvTimeoutError::Disconnected) => Received::Closed,
        }
    }
}
