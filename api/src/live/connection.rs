//! One subscriber's WebSocket connection as the rest of the server sees it: how many
//! subscriptions it runs, and a way to close it with a close code and a reason.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use tokio::sync::Notify;

/// Why the server closes a connection: the close code, the reason sent with it, and the label
/// counted in `stations_live_subscribers_dropped_total` (none for the protocol's own closes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub code: u16,
    pub reason: String,
    pub label: Option<&'static str>,
}

impl Closing {
    pub fn new(code: u16, reason: impl Into<String>, label: Option<&'static str>) -> Self {
        Self {
            code,
            reason: reason.into(),
            label,
        }
    }
}

#[derive(Default)]
pub struct Connection {
    subscriptions: AtomicUsize,
    acknowledged: AtomicBool,
    closing: Mutex<Option<Closing>>,
    close_requested: Notify,
}

impl Connection {
    /// Asks the connection's task to close it; the first request wins.
    pub fn close(&self, code: u16, reason: impl Into<String>, label: &'static str) {
        if let Ok(mut closing) = self.closing.lock()
            && closing.is_none()
        {
            *closing = Some(Closing::new(code, reason, Some(label)));
            self.close_requested.notify_one();
        }
    }

    /// Why the connection is to close, if anyone asked yet.
    pub fn close_requested(&self) -> Option<Closing> {
        self.closing.lock().ok().and_then(|closing| closing.clone())
    }

    /// Completes when someone asked to close the connection, with why.
    pub async fn closing(&self) -> Closing {
        loop {
            let requested = self.close_requested.notified();
            if let Some(closing) = self.close_requested() {
                return closing;
            }
            requested.await;
        }
    }

    /// Counts a subscription in (`true`) as long as fewer than `limit` run, else refuses it.
    pub fn start_subscription(&self, limit: usize) -> bool {
        self.subscriptions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < limit).then_some(running + 1)
            })
            .is_ok()
    }

    pub fn end_subscription(&self) {
        self.subscriptions.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Acquire)
    }

    /// The client's `connection_init` was accepted.
    pub fn acknowledge(&self) {
        self.acknowledged.store(true, Ordering::Release);
    }

    pub fn is_acknowledged(&self) -> bool {
        self.acknowledged.load(Ordering::Acquire)
    }
}
