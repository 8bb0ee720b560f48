//! The connection a mutation writes through.
//!
//! While the mutation's trace is sampled, its write runs in a transaction that first tells
//! PostgreSQL the trace (`stations_api.traceparent`, local to the transaction): the live-change
//! triggers put it in their notification (migration `m20261205_000011`), and every replica's
//! delivery of the change joins the mutation's trace. Otherwise, tracing off included, the
//! write goes to the pool as it always did: no transaction, no statement added.
//!
//! A statement that fails ends the transaction (rolled back: nothing was written), and what
//! follows goes to the pool, as it did before: the lookups that explain a refused write (which
//! code is taken, which station is missing) cannot run in an aborted transaction.

use std::pin::Pin;

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, IsolationLevel, QueryResult, Statement, TransactionError, TransactionOptions,
    TransactionTrait,
};
use tokio::sync::Mutex;

use crate::telemetry::traces;

pub struct Writer<'a> {
    pool: &'a DatabaseConnection,
    /// The transaction carrying the trace, until it commits or a statement fails.
    traced: Mutex<Option<DatabaseTransaction>>,
}

/// Runs `$work` with the traced transaction, which a failure ends, or with the pool.
macro_rules! on_writer {
    ($writer:expr, |$connection:ident| $work:expr) => {{
        let mut traced = $writer.traced.lock().await;
        match traced.as_ref() {
            Some($connection) => {
                let outcome = $work;
                if outcome.is_err() {
                    // Dropped unfinished, the transaction rolls back.
                    traced.take();
                }
                outcome
            }
            None => {
                let $connection = $writer.pool;
                $work
            }
        }
    }};
}

impl<'a> Writer<'a> {
    /// The pool, or a transaction carrying the current trace while it is sampled.
    pub async fn begin(pool: &'a DatabaseConnection) -> Result<Self, DbErr> {
        let Some(traceparent) = traces::current_traceparent() else {
            return Ok(Self {
                pool,
                traced: Mutex::new(None),
            });
        };
        let transaction = pool.begin().await?;
        transaction
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config('stations_api.traceparent', $1, true)",
                [traceparent.into()],
            ))
            .await?;
        Ok(Self {
            pool,
            traced: Mutex::new(Some(transaction)),
        })
    }

    /// Commits the transaction, if one is open. Dropped without it, the write rolls back.
    pub async fn commit(self) -> Result<(), DbErr> {
        match self.traced.into_inner() {
            Some(transaction) => transaction.commit().await,
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Writer<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        on_writer!(self, |connection| connection.execute_raw(statement).await)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        on_writer!(self, |connection| connection.execute_unprepared(sql).await)
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        on_writer!(self, |connection| connection.query_one_raw(statement).await)
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        on_writer!(self, |connection| connection.query_all_raw(statement).await)
    }
}

/// A write that needs a transaction of its own (deleting a station with its observations)
/// takes one from the pool, or a savepoint inside the traced transaction.
#[async_trait::async_trait]
impl TransactionTrait for Writer<'_> {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        on_writer!(self, |connection| connection.begin().await)
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        on_writer!(self, |connection| connection
            .begin_with_config(isolation_level, access_mode)
            .await)
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        on_writer!(self, |connection| connection
            .begin_with_options(options)
            .await)
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        on_writer!(self, |connection| connection.transaction(callback).await)
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        on_writer!(self, |connection| connection
            .transaction_with_config(callback, isolation_level, access_mode)
            .await)
    }
}
