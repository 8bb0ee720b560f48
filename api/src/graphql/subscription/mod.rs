//! Subscription fields, one module per entity, merged into the root in `schema.rs`. Each
//! subscription reads this replica's live events (`crate::live`) and delivers those that match
//! its arguments.

pub mod observation;
pub mod station;

use std::{collections::VecDeque, sync::Arc};

use async_graphql::{Context, futures_util::Stream};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::live::{LiveEvent, LiveHub, connection::Connection};
use crate::metrics::Metrics;

/// The close code for a subscriber that fell behind: 1008, policy violation.
const TOO_SLOW: u16 = 1008;

/// A stream of the items `select` makes of each live event. A subscriber that falls more than
/// the hub's buffer behind gets its connection closed, and the stream ends. It counts in
/// `stations_live_subscriptions` from the moment it receives events until it ends, so that the
/// gauge never counts one that could still miss a change.
pub fn live_stream<T, F>(
    ctx: &Context<'_>,
    select: F,
) -> async_graphql::Result<impl Stream<Item = T> + use<T, F>>
where
    T: Send + 'static,
    F: FnMut(&LiveEvent) -> Vec<T> + Send + 'static,
{
    let state = Subscriber {
        receiver: ctx.data::<Arc<LiveHub>>()?.subscribe(),
        pending: VecDeque::new(),
        select,
        metrics: Arc::clone(ctx.data::<Arc<Metrics>>()?),
        connection: ctx.data_opt::<Arc<Connection>>().cloned(),
    };
    state.metrics.record_subscription(1);
    Ok(async_graphql::futures_util::stream::unfold(
        state,
        |mut subscriber| async move {
            let item = subscriber.next().await?;
            Some((item, subscriber))
        },
    ))
}

/// One subscription's place in the live events.
struct Subscriber<T, F> {
    receiver: broadcast::Receiver<Arc<LiveEvent>>,
    /// Items of the last event not delivered yet.
    pending: VecDeque<T>,
    select: F,
    metrics: Arc<Metrics>,
    connection: Option<Arc<Connection>>,
}

impl<T, F> Drop for Subscriber<T, F> {
    fn drop(&mut self) {
        self.metrics.record_subscription(-1);
    }
}

impl<T, F: FnMut(&LiveEvent) -> Vec<T>> Subscriber<T, F> {
    /// The next item: one left from the last event, or the first of the next events that
    /// yields any; `None` when the subscription ends.
    async fn next(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                self.metrics.record_event_delivered();
                return Some(item);
            }
            match self.receiver.recv().await {
                Ok(event) => self.pending.extend((self.select)(&event)),
                Err(RecvError::Lagged(missed)) => {
                    if let Some(connection) = &self.connection {
                        connection.close(
                            TOO_SLOW,
                            format!(
                                "too slow: {missed} events behind; the limit is \
                                 subscriptions.buffer_events"
                            ),
                            "slow",
                        );
                    }
                    return None;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
