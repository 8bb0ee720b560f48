use async_graphql::{Context, ID, Object, Result};

use crate::auth::{Role, guard::RequireRole};
use crate::database::standbys::ReadConnection;
use crate::domain::{Latitude, Longitude, RadiusKm};
use crate::error::ApiError;
use crate::graphql::limits::Limits;
use crate::graphql::types::Filter;
use crate::graphql::types::cursor;
use crate::graphql::types::station::connection::StationConnection;
use crate::graphql::types::station::geo::StationDistance;
use crate::graphql::types::station::list::{StationFilter, StationOrder, page_size};
use crate::graphql::types::station::{Station, at, parse_station_id};
use crate::service::station::{self as service, StationOrdering};

#[derive(Default)]
pub struct StationQuery;

#[Object(guard = "RequireRole(Role::Reader)")]
impl StationQuery {
    /// The station with this id, or null when there is none.
    async fn station(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Station>> {
        let id = parse_station_id(&id, "id")?;
        let db = ctx.data::<ReadConnection>()?;
        let row = service::find_by_id(db, id).await.map_err(ApiError::from)?;
        Ok(row.map(Station::from))
    }

    /// Stations, a page at a time: pass `pageInfo.endCursor` as `after` for the next page.
    /// Pages stay consistent while stations are added between requests.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, i32::MAX) as usize * child_complexity")]
    async fn stations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "At most graphql.max_page_size.")] first: Option<i32>,
        #[graphql(desc = "The previous page's endCursor; same orderBy.")] after: Option<String>,
        filter: Option<StationFilter>,
        #[graphql(desc = "Default: by id, ascending.")] order_by: Option<StationOrder>,
    ) -> Result<StationConnection> {
        let first = page_size(first.unwrap_or(20), "first", ctx.data::<Limits>()?)?;
        let ordering = order_by.map(StationOrdering::from).unwrap_or_default();
        let criteria = Filter::argument(filter)?;
        let after = after
            .map(|cursor| cursor::decode(&cursor, ordering))
            .transpose()?;
        let db = ctx.data::<ReadConnection>()?;
        let page = service::page(db, &criteria, ordering, after.as_ref(), first)
            .await
            .map_err(ApiError::from)?;
        Ok(StationConnection::new(page, criteria, ordering, after))
    }

    /// The stations nearest to a point, nearest first (ties by id), each with its distance;
    /// with `radiusKm`, only those within that distance. Without it, the `first` nearest
    /// anywhere on Earth.
    #[graphql(complexity = "first.unwrap_or(10).clamp(1, i32::MAX) as usize * child_complexity")]
    async fn stations_near(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Latitude of the point, -90 to 90.")] lat: f64,
        #[graphql(desc = "Longitude of the point, -180 to 180.")] lng: f64,
        #[graphql(desc = "Greatest distance in kilometres, 0 or more.")] radius_km: Option<f64>,
        #[graphql(default = 10, desc = "At most graphql.max_page_size.")] first: Option<i32>,
    ) -> Result<Vec<StationDistance>> {
        let lat = Latitude::parse(lat).map_err(at("lat"))?;
        let lng = Longitude::parse(lng).map_err(at("lng"))?;
        let radius = radius_km
            .map(RadiusKm::parse)
            .transpose()
            .map_err(at("radiusKm"))?;
        let first = page_size(first.unwrap_or(10), "first", ctx.data::<Limits>()?)?;
        let db = ctx.data::<ReadConnection>()?;
        let nearby = service::nearest(db, lat, lng, radius, first)
            .await
            .map_err(ApiError::from)?;
        Ok(nearby.into_iter().map(StationDistance::from).collect())
    }
}
