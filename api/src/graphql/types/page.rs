//! `PageInfo`, where a page of a cursor connection stands in its whole list; every connection
//! of the schema shares it (<https://relay.dev/graphql/connections.htm#sec-undefined.PageInfo>).

use async_graphql::{Context, Object, Result};

use crate::database::standbys::ReadConnection;
use crate::error::ApiError;
use crate::service::observation::{
    self as observations, ObservationPosition, TimeOrder, TimeRange,
};
use crate::service::station::{self as stations, KeysetPosition, StationCriteria, StationOrdering};

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

impl PageInfo {
    /// Where `edges` stand, whose cursors `cursor` reads; `earlier` when the page started
    /// after a cursor.
    pub fn of<Edge>(
        edges: &[Edge],
        cursor: impl Fn(&Edge) -> &String,
        has_next_page: bool,
        earlier: Option<EarlierRows>,
    ) -> Self {
        Self {
            has_next_page,
            start_cursor: edges.first().map(&cursor).cloned(),
            end_cursor: edges.last().map(&cursor).cloned(),
            earlier,
        }
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
        let db = ctx.data::<ReadConnection>()?;
        let found = match earlier {
            EarlierRows::Stations {
                criteria,
                ordering,
                after,
            } => stations::any_up_to(db, criteria, *ordering, after).await,
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
