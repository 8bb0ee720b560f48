//! At most `subscriptions.max_per_connection` operations run on one WebSocket connection at
//! once: its subscriptions, and the queries and mutations sent over it that are still being
//! answered (async-graphql runs every operation of a socket as a stream, through this hook).
//! One more is answered with an error naming the setting, and the others keep running.

use std::sync::Arc;

use async_graphql::{
    Response,
    extensions::ExtensionContext,
    futures_util::stream::{self, BoxStream, StreamExt},
};

use super::connection::Connection;
use crate::error::ErrorCode;
use crate::graphql::pipeline::Policy;

pub struct SubscriptionLimit {
    per_connection: usize,
}

impl SubscriptionLimit {
    pub fn new(per_connection: usize) -> Self {
        Self { per_connection }
    }
}

/// Counts a running subscription out of its connection when it ends, however it ends.
struct Running {
    connection: Arc<Connection>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.connection.end_subscription();
    }
}

impl Policy for SubscriptionLimit {
    /// The subscription's stream, counted while it runs; or one refusal when its connection
    /// runs the most it may already.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
    ) -> BoxStream<'s, Response> {
        // Only WebSocket connections carry one; a stream run without it has no connection to
        // count against.
        let Some(connection) = ctx.data_opt::<Arc<Connection>>().cloned() else {
            return stream;
        };
        if !connection.start_subscription(self.per_connection) {
            let refusal = ErrorCode::TooManySubscriptions.request_error(format!(
                "this connection runs {} operations already (subscriptions, and queries or \
                 mutations not answered yet), the limit (subscriptions.max_per_connection): \
                 wait, stop one, or open another connection",
                self.per_connection
            ));
            return stream::once(async move { Response::from_errors(vec![refusal]) }).boxed();
        }
        let running = Running { connection };
        stream
            .map(move |response| {
                let _keep = &running;
                response
            })
            .boxed()
    }
}
