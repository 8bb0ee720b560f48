use async_graphql::{Context, ID, Object, Result};
use sea_orm::DatabaseConnection;

use crate::error::ApiError;
use crate::graphql::types::connection::StationConnection;
use crate::graphql::types::cursor;
use crate::graphql::types::list::{StationFilter, StationOrder, page_size};
use crate::graphql::types::station::{Station, parse_station_id};
use crate::service::station::{self as service, StationOrdering};

#[derive(Default)]
pub struct StationQuery;

#[Object]
impl StationQuery {
    /// The station with this id, or null when there is none.
    async fn station(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Station>> {
        let id = parse_station_id(&id, "id")?;
        let db = ctx.data::<DatabaseConnection>()?;
        let row = service::find_by_id(db, id).await.map_err(ApiError::from)?;
        Ok(row.map(Station::from))
    }

    /// Stations, a page at a time: pass `pageInfo.endCursor` as `after` for the next page.
    /// Pages stay consistent while stations are added between requests.
    async fn stations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "How many stations, 0 to 100.")] first: Option<i32>,
        #[graphql(desc = "A cursor from the previous page, with the same orderBy.")] after: Option<
            String,
        >,
        filter: Option<StationFilter>,
        #[graphql(desc = "Default: by id, ascending.")] order_by: Option<StationOrder>,
    ) -> Result<StationConnection> {
        let first = page_size(first.unwrap_or(20), "first")?;
        let ordering = order_by.map(StationOrdering::from).unwrap_or_default();
        let criteria = filter
            .map(|filter| filter.validate("filter"))
            .transpose()?
            .unwrap_or_default();
        let after = after
            .map(|cursor| cursor::decode(&cursor, ordering, "after"))
            .transpose()?;
        let db = ctx.data::<DatabaseConnection>()?;
        let page = service::page(db, &criteria, ordering, after.as_ref(), first)
            .await
            .map_err(ApiError::from)?;
        Ok(StationConnection::new(page, criteria, ordering, after))
    }
}
