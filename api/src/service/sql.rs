//! A small builder of PostgreSQL statements whose values travel as parameters.

use sea_orm::{DbBackend, Statement, Value};

/// Builds a statement, numbering each value `$n` in the order given.
pub struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Appends `text`, in which `?` stands for `value`.
    pub fn push(&mut self, text: &str, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        self.text
            .push_str(&text.replace('?', &format!("${}", self.values.len())));
        self
    }

    /// Binds `value` and returns its placeholder (`$n`), for text that uses it more than once.
    pub fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("${}", self.values.len())
    }

    pub fn text(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub fn build(self) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, self.text, self.values)
    }
}
