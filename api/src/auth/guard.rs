//! What each role may do, enforced by async-graphql guards
//! (<https://async-graphql.github.io/async-graphql/en/field_guard.html>) on the schema's
//! objects: the mutation objects need `writer`, the query and subscription objects `reader`.
//! A caller without a token acts in the role the settings open to everyone.
//!
//! A refusal is `UNAUTHENTICATED` (HTTP 401) for a caller without a token, and `FORBIDDEN`
//! (HTTP 403) for one whose token is valid but grants too little.

use async_graphql::{Context, ErrorExtensions, Guard, Result};

use super::{Access, Role};
use crate::error::ApiError;

/// Lets through callers acting in `role` or above.
pub struct RequireRole(pub Role);

impl Guard for RequireRole {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let access = ctx.data::<Access>()?;
        if access.role() >= Some(self.0) {
            return Ok(());
        }
        let refusal = if access.principal.authenticated {
            ApiError::Forbidden {
                needed: self.0.as_str(),
                granted: access.role().map_or("none", Role::as_str),
            }
        } else {
            ApiError::Unauthenticated
        };
        Err(async_graphql::Error::from(refusal).extend())
    }
}
