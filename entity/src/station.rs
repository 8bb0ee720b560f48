//! The `stations` table.

use sea_orm::entity::prelude::*;

/// One geographic station.
///
/// Coordinates are WGS 84 degrees; the database enforces their ranges with CHECK constraints.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "stations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Short external identifier, unique across stations.
    #[sea_orm(column_type = "String(StringLen::N(32))", unique)]
    pub code: String,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    /// `lower(name)`, computed by PostgreSQL on every write (a generated column: nothing may
    /// write it). Name search matches it with `LIKE`, through its trigram index.
    #[sea_orm(column_type = "Text")]
    pub name_lower: String,
    /// Latitude in degrees, -90 to 90.
    #[sea_orm(column_type = "Double")]
    pub lat: f64,
    /// Longitude in degrees, -180 to 180.
    #[sea_orm(column_type = "Double")]
    pub lng: f64,
    /// Elevation above mean sea level in metres, when known.
    #[sea_orm(column_type = "Double", nullable)]
    pub elevation_m: Option<f64>,
    pub created_at: DateTimeWithTimeZone,
    /// Maintained by a trigger on every update, whichever client wrote the row.
    pub updated_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// What the station measured, one row per instant.
    #[sea_orm(has_many = "super::observation::Entity")]
    Observations,
}

impl Related<super::observation::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Observations.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
