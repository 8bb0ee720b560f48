use async_graphql::{Context, Result, Subscription, futures_util::Stream};

use super::live_stream;
use crate::auth::{Role, guard::RequireRole};
use crate::graphql::types::Filter;
use crate::graphql::types::live::{StationChange, StationChangeFilter};
use crate::graphql::types::station::Station;
use crate::live::LiveEvent;

#[derive(Default)]
pub struct StationSubscription;

#[Subscription(guard = "RequireRole(Role::Reader)")]
impl StationSubscription {
    /// Every committed change to the stations that match `filter`, on whichever replica it was
    /// made; RESYNC when changes may have been missed.
    async fn station_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<StationChangeFilter>,
    ) -> Result<impl Stream<Item = StationChange> + use<>> {
        let watch = Filter::argument(filter)?;
        live_stream(ctx, move |event| match event {
            LiveEvent::Stations { kind, traces, rows } => traces
                .iter()
                .filter(|trace| watch.matches(trace))
                .map(|trace| StationChange {
                    kind: (*kind).into(),
                    id: Some(trace.id.to_string().into()),
                    station: rows.get(&trace.id).cloned().map(Station::from),
                })
                .collect(),
            LiveEvent::Resync { stations: true, .. } => vec![StationChange::resync()],
            _ => Vec::new(),
        })
    }
}
