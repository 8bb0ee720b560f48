//! Every statement the API runs against `stations`.
//!
//! Lists are paged by keyset, never by OFFSET: a page is "the next `first` rows after this
//! sort key and id", which costs the same at any depth and neither skips nor repeats rows when
//! others are inserted between two requests.

use chrono::{DateTime, Utc};
use entity::observation;
use entity::station::{self, Column, Entity as Station};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, Order,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
    TransactionSession, TransactionTrait,
    sea_query::{BinOper, Expr, ExprTrait, Func},
};

use super::page::Page;
use super::sql::Sql;
use crate::database;
use crate::domain::{
    DegreeBox, EARTH_RADIUS_KM, Latitude, Longitude, NewStation, RadiusKm, StationChanges,
    enclosing_boxes,
};

/// The unique constraint on `stations.code`, named in the migration that adds the column.
const CODE_UNIQUE_CONSTRAINT: &str = "stations_code_key";
/// The foreign key from `observations` to `stations`.
const OBSERVATIONS_STATION_CONSTRAINT: &str = "observations_station_id_fkey";

/// Which stations a list holds. Every present criterion must match.
#[derive(Debug, Clone, Default)]
pub struct StationCriteria {
    /// Case-insensitive substring of the name, matched literally (`%` and `_` are not
    /// wildcards).
    pub name_contains: Option<String>,
    pub code: Option<String>,
    pub bbox: Option<BoundingBox>,
    pub within: Option<Circle>,
    pub elevation_m: Option<ElevationRange>,
}

/// Points no farther than `radius` from `center` along the Earth's surface.
#[derive(Debug, Clone, Copy)]
pub struct Circle {
    pub lat: Latitude,
    pub lng: Longitude,
    pub radius: RadiusKm,
}

/// A station and its great-circle distance from the point asked about.
#[derive(Debug, Clone)]
pub struct NearbyStation {
    pub row: station::Model,
    pub distance_km: f64,
}

/// A latitude/longitude rectangle. When `min_lng` > `max_lng` the box crosses the
/// antimeridian: from `min_lng` east to 180 and on from -180 to `max_lng`.
#[derive(Debug, Clone, Copy)]
pub struct BoundingBox {
    pub min_lat: Latitude,
    pub max_lat: Latitude,
    pub min_lng: Longitude,
    pub max_lng: Longitude,
}

impl BoundingBox {
    /// Whether the point is inside the box, edges included.
    pub fn contains(&self, lat: f64, lng: f64) -> bool {
        let (west, east) = (self.min_lng.degrees(), self.max_lng.degrees());
        let within_lng = if west <= east {
            (west..=east).contains(&lng)
        } else {
            lng >= west || lng <= east
        };
        (self.min_lat.degrees()..=self.max_lat.degrees()).contains(&lat) && within_lng
    }
}

/// Inclusive bounds on the elevation; stations without an elevation never match.
#[derive(Debug, Clone, Copy, Default)]
pub struct ElevationRange {
    pub gte: Option<f64>,
    pub lte: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortField {
    #[default]
    Id,
    Name,
    Code,
    CreatedAt,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortDirection {
    #[default]
    Asc,
    Desc,
}

/// The order of a list. Ties are broken by id in the same direction, so the order is total
/// and a keyset position is never ambiguous.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StationOrdering {
    pub field: SortField,
    pub direction: SortDirection,
}

/// The value of the sort field at a position in a list.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    /// Ordering by id: the id alone is the key.
    Id,
    Name(String),
    Code(String),
    CreatedAt(DateTime<Utc>),
}

/// A position in an ordered list: the sort key and id of the row last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysetPosition {
    pub key: SortKey,
    pub id: i32,
}

impl KeysetPosition {
    /// Where `row` stands in `ordering`.
    pub fn of(row: &station::Model, ordering: StationOrdering) -> Self {
        let key = match ordering.field {
            SortField::Id => SortKey::Id,
            SortField::Name => SortKey::Name(row.name.clone()),
            SortField::Code => SortKey::Code(row.code.clone()),
            SortField::CreatedAt => SortKey::CreatedAt(row.created_at.with_timezone(&Utc)),
        };
        Self { key, id: row.id }
    }
}

/// One page of the station list.
pub type StationPage = Page<station::Model>;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("a station with code {0:?} already exists")]
    DuplicateCode(String),
    #[error("no station has that id")]
    NotFound,
    /// Deleting the station would delete this many observations, which was not asked for.
    #[error("the station has {0} observations")]
    HasObservations(i64),
    #[error(transparent)]
    Database(#[from] DbErr),
}

#[tracing::instrument(level = "debug", skip(db))]
pub async fn find_by_id(
    db: &impl ConnectionTrait,
    id: i32,
) -> Result<Option<station::Model>, DbErr> {
    Station::find_by_id(id).one(db).await
}

/// Up to `first` rows matching `criteria` after `after`, in `ordering`.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn page(
    db: &impl ConnectionTrait,
    criteria: &StationCriteria,
    ordering: StationOrdering,
    after: Option<&KeysetPosition>,
    first: u64,
) -> Result<StationPage, DbErr> {
    let mut query = Station::find().filter(criteria_condition(criteria));
    if let Some(position) = after {
        query = query.filter(beyond(position, ordering, Side::After));
    }
    let order = match ordering.direction {
        SortDirection::Asc => Order::Asc,
        SortDirection::Desc => Order::Desc,
    };
    if let Some(column) = sort_column(ordering.field) {
        query = query.order_by(column, order.clone());
    }
    // One row more than asked tells whether another page follows, without a second query.
    let rows = query
        .order_by(Column::Id, order)
        .limit(first + 1)
        .all(db)
        .await?;
    Ok(Page::from_one_extra(rows, first))
}

/// The ids of the stations matching `criteria`, in id order, at most `limit` of them.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn matching_ids(
    db: &impl ConnectionTrait,
    criteria: &StationCriteria,
    limit: u64,
) -> Result<Vec<i32>, DbErr> {
    Station::find()
        .select_only()
        .column(Column::Id)
        .filter(criteria_condition(criteria))
        .order_by_asc(Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// `(id, code)` of the stations among `ids` that exist, or whose code is among `codes`.
#[tracing::instrument(level = "debug", skip(db, ids, codes))]
pub async fn ids_and_codes(
    db: &impl ConnectionTrait,
    ids: &[i32],
    codes: &[String],
) -> Result<Vec<(i32, String)>, DbErr> {
    // Arrays, not IN lists: one statement text whatever the number, prepared once.
    let mut sql = Sql::new("");
    sql.push(
        "SELECT id, code FROM stations WHERE id = ANY(?::integer[])",
        ids.to_vec(),
    )
    .push(" OR code = ANY(?::text[])", codes.to_vec());
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "id")?, row.try_get("", "code")?)))
        .collect()
}

/// How many rows match `criteria`, on all pages together.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn count(db: &impl ConnectionTrait, criteria: &StationCriteria) -> Result<u64, DbErr> {
    Station::find()
        .filter(criteria_condition(criteria))
        .count(db)
        .await
}

/// Whether any row matching `criteria` stands at `position` or before it in `ordering`.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn any_up_to(
    db: &impl ConnectionTrait,
    criteria: &StationCriteria,
    ordering: StationOrdering,
    position: &KeysetPosition,
) -> Result<bool, DbErr> {
    let found = Station::find()
        .select_only()
        .column(Column::Id)
        .filter(criteria_condition(criteria))
        .filter(beyond(position, ordering, Side::UpTo))
        .limit(1)
        .into_tuple::<i32>()
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Up to `first` stations nearest to (`lat`, `lng`), nearest first and ties by id, optionally
/// no farther than `radius`.
///
/// Searches a circle first, widening it until it holds `first` stations: when a circle of
/// radius r holds them, every station outside is farther than r and so than all of them.
/// Each step is one query answered by the point index; the first usually suffices.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn nearest(
    db: &impl ConnectionTrait,
    lat: Latitude,
    lng: Longitude,
    radius: Option<RadiusKm>,
    first: u64,
) -> Result<Vec<NearbyStation>, DbErr> {
    /// Widening search radii in km; the last step covers the whole Earth.
    const SEARCH_RADII_KM: [f64; 5] = [50.0, 200.0, 800.0, 3_200.0, 12_800.0];
    if first == 0 {
        return Ok(Vec::new());
    }
    let limit = radius.map_or(f64::INFINITY, RadiusKm::kilometres);
    let steps = SEARCH_RADII_KM
        .iter()
        .copied()
        .filter(|step| *step < limit)
        .filter_map(|step| RadiusKm::parse(step).ok().map(Some))
        .chain(std::iter::once(radius));
    let mut found = Vec::new();
    for step in steps {
        let statement = nearest_statement(db.get_database_backend(), lat, lng, step, first);
        found = db
            .query_all_raw(statement)
            .await?
            .iter()
            .map(|row| {
                Ok(NearbyStation {
                    row: station::Model::from_query_result(row, "")?,
                    distance_km: row.try_get("", "distance_km")?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        if found.len() as u64 >= first {
            break;
        }
    }
    Ok(found)
}

/// One step of [`nearest`]: the `first` stations nearest to the point within `radius` (or
/// anywhere). Public so that a test can check that its plan uses the index.
pub fn nearest_statement(
    backend: DbBackend,
    lat: Latitude,
    lng: Longitude,
    radius: Option<RadiusKm>,
    first: u64,
) -> Statement {
    let mut query = Station::find().expr_as(distance_km(lat, lng), "distance_km");
    if let Some(radius) = radius {
        query = query.filter(within_circle(lat, lng, radius));
    }
    query
        .order_by(distance_km(lat, lng), Order::Asc)
        .order_by(Column::Id, Order::Asc)
        .limit(first)
        .build(backend)
}

#[tracing::instrument(level = "debug", skip(db))]
pub async fn create(
    db: &impl ConnectionTrait,
    station: NewStation,
) -> Result<station::Model, WriteError> {
    let code = station.code.as_str().to_owned();
    new_row(station)
        .insert(db)
        .await
        .map_err(|error| write_error(error, Some(code)))
}

/// Creates all of `stations` or none of them, and returns them in the order given.
#[tracing::instrument(level = "debug", skip(db, stations), fields(count = stations.len()))]
pub async fn create_many(
    db: &(impl ConnectionTrait + TransactionTrait),
    stations: Vec<NewStation>,
) -> Result<Vec<station::Model>, WriteError> {
    if stations.is_empty() {
        return Ok(Vec::new());
    }
    let codes: Vec<String> = stations
        .iter()
        .map(|s| s.code.as_str().to_owned())
        .collect();
    let inserted = Station::insert_many(stations.into_iter().map(new_row))
        .exec_with_returning(db)
        .await;
    let mut rows = match inserted {
        Ok(rows) => rows,
        Err(error) if database::violated_constraint(&error) == Some(CODE_UNIQUE_CONSTRAINT) => {
            // One INSERT is atomic, so nothing was written. Name the first code that exists
            // (another client may have taken it between the check and the insert; the
            // generic message covers that).
            let taken = Station::find()
                .select_only()
                .column(Column::Code)
                .filter(Column::Code.is_in(codes.clone()))
                .into_tuple::<String>()
                .all(db)
                .await?;
            let first_taken = codes
                .into_iter()
                .find(|code| taken.iter().any(|t| t == code));
            return Err(WriteError::DuplicateCode(first_taken.unwrap_or_default()));
        }
        Err(error) => return Err(write_error(error, None)),
    };
    // RETURNING does not promise the order of VALUES; codes are unique, so sort by them.
    rows.sort_by_key(|row| codes.iter().position(|code| *code == row.code));
    Ok(rows)
}

/// Applies `changes` to the station `id` and returns it as stored afterwards.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn update(
    db: &impl ConnectionTrait,
    id: i32,
    changes: StationChanges,
) -> Result<station::Model, WriteError> {
    let code = changes.code.as_ref().map(|code| code.as_str().to_owned());
    let mut row = station::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id),
        ..Default::default()
    };
    if let Some(new_code) = changes.code {
        row.code = Set(new_code.into_inner());
    }
    if let Some(name) = changes.name {
        row.name = Set(name.into_inner());
    }
    if let Some(lat) = changes.lat {
        row.lat = Set(lat.degrees());
    }
    if let Some(lng) = changes.lng {
        row.lng = Set(lng.degrees());
    }
    if let Some(elevation) = changes.elevation_m {
        row.elevation_m = Set(elevation.map(|e| e.metres()));
    }
    row.update(db).await.map_err(|error| match error {
        DbErr::RecordNotUpdated => WriteError::NotFound,
        other => write_error(other, code),
    })
}

/// Deletes the station `id`. A station with observations is deleted only with `cascade`, and
/// then together with them, in one transaction.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn delete(
    db: &(impl ConnectionTrait + TransactionTrait),
    id: i32,
    cascade: bool,
) -> Result<(), WriteError> {
    if cascade {
        let transaction = db.begin().await?;
        observation::Entity::delete_many()
            .filter(observation::Column::StationId.eq(id))
            .exec(&transaction)
            .await?;
        let result = Station::delete_by_id(id).exec(&transaction).await?;
        if result.rows_affected == 0 {
            return Err(WriteError::NotFound);
        }
        transaction.commit().await?;
        return Ok(());
    }
    // The foreign key refuses the delete while observations remain: nothing goes silently.
    match Station::delete_by_id(id).exec(db).await {
        Ok(result) if result.rows_affected == 0 => Err(WriteError::NotFound),
        Ok(_) => Ok(()),
        Err(error)
            if database::violated_constraint(&error) == Some(OBSERVATIONS_STATION_CONSTRAINT) =>
        {
            let count = observation::Entity::find()
                .filter(observation::Column::StationId.eq(id))
                .count(db)
                .await?;
            Err(WriteError::HasObservations(count as i64))
        }
        Err(error) => Err(error.into()),
    }
}

fn new_row(station: NewStation) -> station::ActiveModel {
    station::ActiveModel {
        code: Set(station.code.into_inner()),
        name: Set(station.name.into_inner()),
        lat: Set(station.lat.degrees()),
        lng: Set(station.lng.degrees()),
        elevation_m: Set(station.elevation_m.map(|e| e.metres())),
        ..Default::default()
    }
}

fn write_error(error: DbErr, code: Option<String>) -> WriteError {
    match (database::violated_constraint(&error), code) {
        (Some(CODE_UNIQUE_CONSTRAINT), Some(code)) => WriteError::DuplicateCode(code),
        _ => WriteError::Database(error),
    }
}

fn criteria_condition(criteria: &StationCriteria) -> Condition {
    let mut condition = Condition::all();
    if let Some(text) = &criteria.name_contains {
        // `ILIKE` on `name`, spelled so that the case of the names was folded when they were
        // written (see the migration that adds `name_lower`): PostgreSQL lowers the term the
        // same way, which Rust's `to_lowercase` would not always do. Backslash is PostgreSQL's
        // default LIKE escape character.
        let pattern = format!("%{}%", escape_like(text));
        condition = condition.add(
            Expr::col(Column::NameLower).binary(BinOper::Like, Func::lower(Expr::val(pattern))),
        );
    }
    if let Some(code) = &criteria.code {
        condition = condition.add(Column::Code.eq(code.as_str()));
    }
    if let Some(bbox) = criteria.bbox {
        let (south, north) = (bbox.min_lat.degrees(), bbox.max_lat.degrees());
        let (west, east) = (bbox.min_lng.degrees(), bbox.max_lng.degrees());
        let band = |west, east| {
            in_box(DegreeBox {
                south,
                north,
                west,
                east,
            })
        };
        condition = if west <= east {
            condition.add(band(west, east))
        } else {
            // Across the antimeridian: one box on each side of it.
            condition.add(
                Condition::any()
                    .add(band(west, Longitude::MAX))
                    .add(band(Longitude::MIN, east)),
            )
        };
    }
    if let Some(circle) = criteria.within {
        condition = condition.add(within_circle(circle.lat, circle.lng, circle.radius));
    }
    if let Some(range) = criteria.elevation_m {
        if let Some(gte) = range.gte {
            condition = condition.add(Column::ElevationM.gte(gte));
        }
        if let Some(lte) = range.lte {
            condition = condition.add(Column::ElevationM.lte(lte));
        }
    }
    condition
}

/// The great-circle distance in km from (`lat`, `lng`) to a station: the haversine formula on
/// a sphere of the mean Earth radius.
fn distance_km(lat: Latitude, lng: Longitude) -> Expr {
    Expr::cust_with_values(
        "2 * $3 * asin(least(1, sqrt(
             power(sin(radians(lat - $1) / 2), 2)
             + cos(radians($1)) * cos(radians(lat)) * power(sin(radians(lng - $2) / 2), 2))))",
        [lat.degrees(), lng.degrees(), EARTH_RADIUS_KM],
    )
}

/// Stations no farther than `radius` from (`lat`, `lng`): the boxes enclosing the circle
/// narrow the candidates through the point index, the exact distance decides.
fn within_circle(lat: Latitude, lng: Longitude, radius: RadiusKm) -> Condition {
    let mut condition = Condition::all();
    if let Some(boxes) = enclosing_boxes(lat, lng, radius) {
        condition = condition.add(boxes.into_iter().fold(Condition::any(), |any, rectangle| {
            any.add(in_box(rectangle))
        }));
    }
    condition.add(distance_km(lat, lng).lte(radius.kilometres()))
}

/// `point(lng, lat) <@ box`, edges included: what the GiST index on point(lng, lat) answers.
fn in_box(rectangle: DegreeBox) -> Expr {
    Expr::cust_with_values(
        "point(lng, lat) <@ box(point($1, $2), point($3, $4))",
        [
            rectangle.west,
            rectangle.south,
            rectangle.east,
            rectangle.north,
        ],
    )
}

/// Escapes the LIKE wildcards so that user text matches literally.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn sort_column(field: SortField) -> Option<Column> {
    match field {
        SortField::Id => None,
        SortField::Name => Some(Column::Name),
        SortField::Code => Some(Column::Code),
        SortField::CreatedAt => Some(Column::CreatedAt),
    }
}

/// Which rows a keyset condition keeps, relative to a position in the ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Strictly after the position: the next page.
    After,
    /// At the position or before it: what precedes the next page.
    UpTo,
}

/// Rows on one `side` of `position` in `ordering`, as one row-value comparison that the
/// `(sort column, id)` indexes answer directly: `(name, id) > ($1, $2)`.
fn beyond(position: &KeysetPosition, ordering: StationOrdering, side: Side) -> Expr {
    let key: Option<(Column, Expr)> = match &position.key {
        SortKey::Id => None,
        SortKey::Name(name) => Some((Column::Name, Expr::val(name.as_str()))),
        SortKey::Code(code) => Some((Column::Code, Expr::val(code.as_str()))),
        SortKey::CreatedAt(at) => Some((Column::CreatedAt, Expr::val(at.fixed_offset()))),
    };
    let (left, right) = match key {
        None => (Expr::col(Column::Id), Expr::val(position.id)),
        Some((column, value)) => (
            Expr::tuple([Expr::col(column), Expr::col(Column::Id)]),
            Expr::tuple([value, Expr::val(position.id)]),
        ),
    };
    match (ordering.direction, side) {
        (SortDirection::Asc, Side::After) => left.gt(right),
        (SortDirection::Asc, Side::UpTo) => left.lte(right),
        (SortDirection::Desc, Side::After) => left.lt(right),
        (SortDirection::Desc, Side::UpTo) => left.gte(right),
    }
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_in_user_text_match_literally() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
    }
}
