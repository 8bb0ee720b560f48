//! At most `subscriptions.max_per_connection` subscriptions run on one WebSocket connection;
//! one more is answered with an error naming the setting, and the others keep running. Each
//! subscription counts in `stations_live_subscriptions` while it runs.

use std::sync::Arc;

use async_graphql::{
    Response, ServerError,
    extensions::{ExtensionContext, NextSubscribe},
    futures_util::stream::{self, BoxStream, StreamExt},
};

use crate::live::connection::Connection;
use crate::metrics::Metrics;

pub struct SubscriptionLimit {
    per_connection: usize,
    metrics: Arc<Metrics>,
}

impl SubscriptionLimit {
    pub fn new(per_connection: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            per_connection,
            metrics,
        }
    }
}

/// Counts a running subscription out when it ends, however it ends.
struct Running {
    connection: Option<Arc<Connection>>,
    metrics: Arc<Metrics>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(connection) = &self.connection {
            connection.end_subscription();
        }
        self.metrics.record_subscription(-1);
    }
}

impl SubscriptionLimit {
    /// The subscription's stream, counted while it runs; or one refusal when its connection
    /// runs the most it may already.
    pub fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let connection = ctx.data_opt::<Arc<Connection>>().cloned();
        if let Some(connection) = &connection
            && !connection.start_subscription(self.per_connection)
        {
            let mut refusal = ServerError::new(
                format!(
                    "this connection runs {} subscriptions already, the limit \
                     (subscriptions.max_per_connection): stop one, or open another connection",
                    self.per_connection
                ),
                None,
            );
            refusal
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", "TOO_MANY_SUBSCRIPTIONS");
            return stream::once(async move { Response::from_errors(vec![refusal]) }).boxed();
        }
        self.metrics.record_subscription(1);
        let running = Running {
            connection,
            metrics: Arc::clone(&self.metrics),
        };
        next.run(ctx, stream)
            .map(move |response| {
                let _keep = &running;
                response
            })
            .boxed()
    }
}
