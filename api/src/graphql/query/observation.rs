use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};

use crate::auth::{Role, guard::RequireRole};
use crate::database::standbys::ReadConnection;
use crate::domain::Measure;
use crate::error::ApiError;
use crate::graphql::limits::Limits;
use crate::graphql::types::Filter;
use crate::graphql::types::column::Column;
use crate::graphql::types::cursor;
use crate::graphql::types::observation::series::{
    EmptyBuckets, ObservationSeries, SeriesBucket, StationSelection, check_points,
    check_range_and_zone, series_complexity,
};
use crate::graphql::types::observation::{
    ObservationConnection, ObservationFilter, ObservationOrder,
};
use crate::graphql::types::station::list::page_size;
use crate::service::observation::{self as service, TimeOrder};
use crate::service::series::{self, MeasureAggregates, SeriesRequest, TimeZones};

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

    /// Observations as time series: per station (or for all of them together, with
    /// `combine`) and per bucket of the range, the number of observations and, per measure,
    /// count, min, max and avg, and the precipitation total. Each list holds one value per
    /// bucket, ready for a chart. Buckets of a day or longer follow `timeZone`'s calendar
    /// (days of 23 or 25 hours when clocks change; weeks start on Monday).
    #[graphql(
        complexity = "series_complexity(&stations, since, until, bucket, combine.unwrap_or_default(), child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn observation_series(
        &self,
        ctx: &Context<'_>,
        stations: StationSelection,
        #[graphql(desc = "The first instant counted.")] since: DateTime<Utc>,
        #[graphql(desc = "The first instant not counted.")] until: DateTime<Utc>,
        bucket: SeriesBucket,
        #[graphql(
            default_with = "Some(\"UTC\".to_owned())",
            desc = "An IANA zone (Europe/Paris) for DAY, WEEK and MONTH buckets."
        )]
        time_zone: Option<String>,
        #[graphql(default_with = "Some(EmptyBuckets::Omit)")] empty_buckets: Option<EmptyBuckets>,
        #[graphql(
            default_with = "Some(false)",
            desc = "One series for all the stations together."
        )]
        combine: Option<bool>,
    ) -> Result<ObservationSeries> {
        // Nullable with defaults, so that an unset variable may be passed for any of them.
        let time_zone = time_zone.unwrap_or_else(|| "UTC".to_owned());
        let empty_buckets = empty_buckets.unwrap_or_default();
        let combine = combine.unwrap_or_default();
        check_range_and_zone(since, until, bucket, &time_zone)?;
        let limits = ctx.data::<Limits>()?;
        let db = ctx.data::<ReadConnection>()?;
        if !TimeZones::knows(db, &time_zone)
            .await
            .map_err(ApiError::from)?
        {
            return Err(ApiError::bad_input(
                "timeZone",
                format!(
                    "must name a zone of the IANA time zone database, such as Europe/Paris or \
                     America/New_York (got {time_zone:?})"
                ),
            )
            .into());
        }
        let station_ids = stations.resolve(db, limits, "stations").await?;
        let request = SeriesRequest {
            station_ids,
            since,
            until,
            width: bucket.into(),
            zone: time_zone.clone(),
            gaps: empty_buckets.into(),
            combined: combine,
            measures: selected_measures(ctx),
        };
        let bucket_starts = series::bucket_starts(db, &request)
            .await
            .map_err(ApiError::from)?;
        check_points(
            request.station_ids.len(),
            bucket_starts.len(),
            combine,
            limits,
        )?;
        let computed = series::series(db, &request, bucket_starts)
            .await
            .map_err(ApiError::from)?;
        Ok(ObservationSeries {
            bucket,
            time_zone,
            bucket_starts: Column(computed.bucket_starts),
            series: computed.series.into_iter().map(Into::into).collect(),
        })
    }
}

/// The measures the operation selects in `observationSeries`, each with the aggregates it
/// selects: only those are computed.
fn selected_measures(ctx: &Context<'_>) -> Vec<MeasureAggregates> {
    let series = ctx.look_ahead().field("series");
    Measure::ALL
        .into_iter()
        .map(|measure| {
            let stats = series.field(measure.graphql_name());
            MeasureAggregates {
                measure,
                count: stats.field("count").exists(),
                min: stats.field("min").exists(),
                max: stats.field("max").exists(),
                avg: stats.field("avg").exists(),
                total: measure == Measure::PrecipitationMm
                    && series.field("precipitationTotalMm").exists(),
            }
        })
        .filter(MeasureAggregates::is_wanted)
        .collect()
}
