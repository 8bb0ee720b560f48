//! The `observations` table.

use sea_orm::entity::prelude::*;

/// What one station measured at one instant. Every measurement is optional: a station reports
/// what its instruments have. The database checks each against its plausible range.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "observations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique together with `observed_at`: a station reports once per instant.
    pub station_id: i32,
    pub observed_at: DateTimeWithTimeZone,
    /// Air temperature in degrees Celsius, -90 to 60.
    #[sea_orm(column_type = "Double", nullable)]
    pub temperature_c: Option<f64>,
    /// Air pressure in hectopascals, 300 to 1100.
    #[sea_orm(column_type = "Double", nullable)]
    pub pressure_hpa: Option<f64>,
    /// Relative humidity in percent, 0 to 100.
    #[sea_orm(column_type = "Double", nullable)]
    pub humidity_pct: Option<f64>,
    /// Precipitation since the station's previous observation in millimetres, 0 to 2000.
    #[sea_orm(column_type = "Double", nullable)]
    pub precipitation_mm: Option<f64>,
    pub created_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The station that made the observation.
    #[sea_orm(
        belongs_to = "super::station::Entity",
        from = "Column::StationId",
        to = "super::station::Column::Id"
    )]
    Station,
}

impl Related<super::station::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Station.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
