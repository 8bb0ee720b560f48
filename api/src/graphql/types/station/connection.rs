//! The `stations` list as a Relay cursor connection
//! (<https://relay.dev/graphql/connections.htm>), paging forward with `first` and `after`.

use async_graphql::{Context, Object, Result};

use super::Station;
use super::edges::{StationEdge, StationEdges};
use crate::database::standbys::ReadConnection;
use crate::error::ApiError;
use crate::graphql::types::cursor;
use crate::graphql::types::page::{EarlierRows, PageInfo};
use crate::service::station::{
    self as service, KeysetPosition, StationCriteria, StationOrdering, StationPage,
};

/// One page of stations.
pub struct StationConnection {
    edges: Vec<StationEdge>,
    page_info: PageInfo,
    criteria: StationCriteria,
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
        let earlier = after.map(|after| EarlierRows::Stations {
            criteria: criteria.clone(),
            ordering,
            after,
        });
        let page_info = PageInfo::of(&edges, |edge| &edge.cursor, page.has_next_page, earlier);
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
        let db = ctx.data::<ReadConnection>()?;
        Ok(service::count(db, &self.criteria)
            .await
            .map_err(ApiError::from)?)
    }
}
