use async_graphql::{Context, Object, Result};

use crate::auth::{Role, guard::RequireRole};
use crate::database::standbys::ReadConnection;
use crate::error::ApiError;
use crate::graphql::limits::Limits;
use crate::graphql::types::Filter;
use crate::graphql::types::cursor;
use crate::graphql::types::observation::{
    ObservationConnection, ObservationFilter, ObservationOrder,
};
use crate::graphql::types::station::list::page_size;
use crate::service::observation::{self as service, TimeOrder};

#[derive(Default)]
pub struct ObservationQuery;

#[Object(guard = "RequireRole(Role::Reader)")]
impl ObservationQuery {
    /// Observations of every station, a page at a time, newest first unless `order` says
    /// otherwise: pass `pageInfo.endCursor` as `after` for the next page.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, i32::MAX) as usize * child_complexity")]
    async fn observations(
        &self,
        ctx: &Context<'_>,
        filter: Option<ObservationFilter>,
        #[graphql(default = 20, desc = "At most graphql.max_page_size.")] first: Option<i32>,
        #[graphql(desc = "The previous page's endCursor; same order.")] after: Option<String>,
        #[graphql(desc = "Default: NEWEST_FIRST.")] order: Option<ObservationOrder>,
    ) -> Result<ObservationConnection> {
        let first = page_size(first.unwrap_or(20), "first", ctx.data::<Limits>()?)?;
        let order = TimeOrder::from(order.unwrap_or_default());
        let criteria = Filter::argument(filter)?;
        let after = after
            .map(|cursor| cursor::decode_observation(&cursor, order))
            .transpose()?;
        let db = ctx.data::<ReadConnection>()?;
        let page = service::page(db, &criteria, order, after, first)
            .await
            .map_err(ApiError::from)?;
        Ok(ObservationConnection::new(
            page,
            order,
            after,
            criteria.station_ids,
            criteria.range,
        ))
    }
}
