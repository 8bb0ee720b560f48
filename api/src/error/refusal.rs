//! A request refused before any operation ran, as its HTTP answer: the status of its
//! [`ErrorCode`] and a GraphQL-shaped body, so that clients read it like any other error.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{ErrorCode, ResponseMedia};

#[derive(Debug)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    /// The request parameter at fault (`variables`, `[2].query`).
    pub field: Option<String>,
    media: ResponseMedia,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            media: ResponseMedia::Json,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Answered in `media`, the one the client accepts.
    pub fn in_media(mut self, media: ResponseMedia) -> Self {
        self.media = media;
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut extensions = json!({ "code": self.code.as_str() });
        if let Some(field) = self.field {
            extensions["field"] = json!(field);
        }
        let body = json!({ "errors": [{ "message": self.message, "extensions": extensions }] });
        (
            self.code.status(self.media),
            [(header::CONTENT_TYPE, self.media.content_type())],
            body.to_string(),
        )
            .into_response()
    }
}
