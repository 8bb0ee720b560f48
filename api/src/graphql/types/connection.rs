//! The `stations` list as a Relay cursor connection
//! (<https://relay.dev/graphql/connections.htm>), paging forward with `first` and `after`, and
//! the `PageInfo` every connection shares.

use async_graphql::{Context, Object, Result, SimpleObject};
use sea_orm::DatabaseConnection;

use super::cursor;
use super::edges::StationEdges;
use super::station::Station;
use crate::error::ApiError;
use crate::service::observation::{
    self as observations, ObservationPosition, TimeOrder, TimeRange,
};
use crate::service::station::{
    self as service, KeysetPosition, StationCriteria, StationOrdering, StationPage,
};

/// One page of stations.
pub struct StationConnection {
    edges: Vec<StationEdge>,
    page_info: PageInfo,
    criteria: StationCriteria,
}

#[derive(SimpleObject)]
pub struct StationEdge {
    /// Pass as `after` to continue the list after this station.
    pub cursor: String,
    pub node: Station,
}

/// Where this page stands in the whole list; shared by every connection of the schema.
pub struct PageInfo {
    pub has_next_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
    /// What `hasPreviousPage` asks the database, when the page did not start the list.
    pub earlier: Option<EarlierRows>,
}

/// The rows a page that started after a cursor left behind it.
pub enum EarlierRows {
    Stations {
        criteria: StationCriteria,
        ordering: StationOrdering,
        after: KeysetPosition,
    },
    Observations {
        station_ids: Option<Vec<i32>>,
        range: TimeRange,
        order: TimeOrder,
        after: ObservationPosition,
    },
}

impl StationConnection {
    pub fn new(
        page: StationPage,
        criteria: StationCriteria,
        ordering: StationOrdering,
        after: Option<KeysetPosition>,
    ) -> Self {
        let edges: Vec<StationEdge> = page
            .rows
            .into_iter()
            .map(|row| StationEdge {
                cursor: cursor::encode(&KeysetPosition::of(&row, ordering), ordering),
                node: Station::from(row),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: page.has_next_page,
            start_cursor: edges.first().map(|edge| edge.cursor.clone()),
            end_cursor: edges.last().map(|edge| edge.cursor.clone()),
            earlier: after.map(|after| EarlierRows::Stations {
                criteria: criteria.clone(),
                ordering,
                after,
            }),
        };
        Self {
            edges,
            page_info,
            criteria,
        }
    }
}

#[Object]
impl StationConnection {
    async fn edges(&self) -> StationEdges<'_> {
        StationEdges(&self.edges)
    }

    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }

    /// How many stations match the filter, on all pages together. Counted only when asked
    /// for: it costs a second query.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        let db = ctx.data::<DatabaseConnection>()?;
        Ok(service::count(db, &self.criteria)
            .await
            .map_err(ApiError::from)?)
    }
}

#[Object]
impl PageInfo {
    /// Whether stations follow this page.
    async fn has_next_page(&self) -> bool {
        self.has_next_page
    }

    /// Whether stations matching the filter come before this page. Only a page requested
    /// with `after` can have any; checking costs a query, made only when asked for.
    async fn has_previous_page(&self, ctx: &Context<'_>) -> Result<bool> {
        let Some(earlier) = &self.earlier else {
            return Ok(false);
        };
        let db = ctx.data::<DatabaseConnection>()?;
        let found = match earlier {
            EarlierRows::Stations {
                criteria,
                ordering,
                after,
            } => service::any_up_to(db, criteria, *ordering, after).await,
            EarlierRows::Observations {
                station_ids,
                range,
                order,
                after,
            } => observations::any_up_to(db, station_ids.as_deref(), *range, *order, *after).await,
        };
        Ok(found.map_err(ApiError::from)?)
    }

    async fn start_cursor(&self) -> Option<&str> {
        self.start_cursor.as_deref()
    }

    async fn end_cursor(&self) -> Option<&str> {
        self.end_cursor.as_deref()
    }
}
