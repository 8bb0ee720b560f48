//! The fields that lead from a station to its observations. Each asks a batch loader
//! (`graphql::loaders`), so a page of stations costs one statement per field, not one per
//! station.

use async_graphql::{ComplexObject, Context, Result};
use chrono::{DateTime, Utc};

use super::Station;
use super::list::page_size;
use crate::graphql::limits::Limits;
use crate::graphql::loaders::{LatestObservation, OfStation, load_one};
use crate::graphql::types::cursor;
use crate::graphql::types::observation::{
    Observation, ObservationConnection, ObservationOrder, ObservationSummary, time_range,
};
use crate::service::observation::{TimeOrder, Window};

#[ComplexObject]
impl Station {
    /// This station's observations, a page at a time, newest first unless `order` says
    /// otherwise: pass `pageInfo.endCursor` as `after` for the next page. `since` is
    /// inclusive, `until` exclusive.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, i32::MAX) as usize * child_complexity")]
    async fn observations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "At most graphql.max_page_size.")] first: Option<i32>,
        #[graphql(desc = "The previous page's endCursor; same order.")] after: Option<String>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        #[graphql(desc = "Default: NEWEST_FIRST.")] order: Option<ObservationOrder>,
    ) -> Result<ObservationConnection> {
        let first = page_size(first.unwrap_or(20), "first", ctx.data::<Limits>()?)?;
        let order = TimeOrder::from(order.unwrap_or_default());
        let range = time_range(since, until, "")?;
        let after = after
            .map(|cursor| cursor::decode_observation(&cursor, order))
            .transpose()?;
        let window = Window {
            range,
            order,
            after,
            first,
        };
        let page = load_one(ctx, OfStation::new(self.row_id, window))
            .await?
            .unwrap_or_default();
        Ok(ObservationConnection::new(
            page,
            order,
            after,
            Some(vec![self.row_id]),
            range,
        ))
    }

    /// The most recent observation, or null when the station has none.
    async fn latest_observation(&self, ctx: &Context<'_>) -> Result<Option<Observation>> {
        Ok(
            load_one(ctx, OfStation::new(self.row_id, LatestObservation))
                .await?
                .map(Observation::from),
        )
    }

    /// Counts and min/max/avg of each measurement over a time range (all time when left out),
    /// computed in the database. `since` is inclusive, `until` exclusive.
    async fn observation_summary(
        &self,
        ctx: &Context<'_>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<ObservationSummary> {
        let range = time_range(since, until, "")?;
        let summary = load_one(ctx, OfStation::new(self.row_id, range))
            .await?
            .unwrap_or_default();
        Ok(ObservationSummary::from(summary))
    }
}
