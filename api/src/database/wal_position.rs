//! Read-your-writes tokens: where the primary's write-ahead log stood after a mutation
//! committed, and which cluster and timeline that position belongs to.
//!
//! A standby that has replayed up to the position holds every row the mutation wrote. The
//! position alone is not enough: after a failover (a new timeline) or against another cluster
//! (another system identifier), the same number names other history, so a token names both
//! and is trusted only while they match the primary's.
//!
//! On the wire a token is 40 hexadecimal digits: the system identifier (16), the timeline
//! (8), the position (16). Clients treat it as opaque; two tokens of one cluster and timeline
//! compare as strings in the order of their positions, so a client that keeps the larger of
//! two keeps the later write.

use std::fmt;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Statement};

/// A position in one cluster's write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition {
    pub cluster: Cluster,
    /// Bytes from the start of the log (`pg_lsn - '0/0'`).
    pub lsn: u64,
}

/// Which history a position belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cluster {
    /// `pg_control_system().system_identifier`: the same on a primary and its standbys.
    pub system_identifier: u64,
    /// The primary's timeline: it grows at every promotion.
    pub timeline: u32,
}

/// What is wrong with a token a client sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "is not a read-your-writes token: send back the value of a mutation's \
     extensions.readYourWrites (or its X-Read-Your-Writes header) unchanged"
)]
pub struct NotAToken;

const TOKEN_DIGITS: usize = 40;

impl WalPosition {
    /// Reads a token as [`fmt::Display`] writes it.
    pub fn parse(token: &str) -> Result<Self, NotAToken> {
        if token.len() != TOKEN_DIGITS || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(NotAToken);
        }
        let number = |digits: std::ops::Range<usize>| u64::from_str_radix(&token[digits], 16);
        let timeline = number(16..24).map_err(|_| NotAToken)?;
        Ok(Self {
            cluster: Cluster {
                system_identifier: number(0..16).map_err(|_| NotAToken)?,
                timeline: u32::try_from(timeline).map_err(|_| NotAToken)?,
            },
            lsn: number(24..40).map_err(|_| NotAToken)?,
        })
    }

    /// The primary's current position, read on `primary`: after a commit returned, at or past
    /// that commit. Any session of the primary will do, so the pool's next connection does (one
    /// round trip after each mutation, measured by `bench/run standby`). The flush position:
    /// a commit has been flushed before it returns, and standbys receive flushed WAL only, so a
    /// position past it (the insert position, where later records may wait up to
    /// `wal_writer_delay` to be flushed) would keep readers waiting for nothing; unless
    /// `synchronous_commit` is off, where a commit returns before its flush and only the insert
    /// position is sure to be past it.
    pub async fn of_primary(primary: &impl ConnectionTrait) -> Result<Self, DbErr> {
        let row = primary
            .query_one_raw(Statement::from_string(
                primary.get_database_backend(),
                "WITH here AS (
                     SELECT CASE current_setting('synchronous_commit')
                                WHEN 'off' THEN pg_current_wal_insert_lsn()
                                ELSE pg_current_wal_flush_lsn()
                            END AS lsn
                 )
                 SELECT (lsn - '0/0')::bigint AS lsn, pg_walfile_name(lsn) AS wal_file,
                        (SELECT system_identifier FROM pg_control_system()) AS system_identifier
                 FROM here",
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the primary's WAL position".to_owned()))?;
        Self::from_row(&row)
    }

    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        let lsn: i64 = row.try_get("", "lsn")?;
        let wal_file: String = row.try_get("", "wal_file")?;
        let system_identifier: i64 = row.try_get("", "system_identifier")?;
        // A WAL file's name begins with its timeline, in 8 hexadecimal digits.
        let timeline = wal_file
            .get(..8)
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or_else(|| DbErr::Type(format!("unexpected WAL file name {wal_file:?}")))?;
        Ok(Self {
            cluster: Cluster {
                system_identifier: system_identifier as u64,
                timeline,
            },
            lsn: lsn as u64,
        })
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}{:08x}{:016x}",
            self.cluster.system_identifier, self.cluster.timeline, self.lsn
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(system_identifier: u64, timeline: u32, lsn: u64) -> WalPosition {
        WalPosition {
            cluster: Cluster {
                system_identifier,
                timeline,
            },
            lsn,
        }
    }

    #[test]
    fn a_token_round_trips_and_orders_as_its_position() {
        let earlier = position(7_715_685_387_542_063_250, 1, 0x5E39_6628);
        let later = position(7_715_685_387_542_063_250, 1, 0x1_0000_0000);
        for token in [earlier, later] {
            assert_eq!(WalPosition::parse(&token.to_string()), Ok(token));
        }
        assert!(earlier.to_string() < later.to_string());
        assert_eq!(earlier.to_string().len(), TOKEN_DIGITS);
    }

    #[test]
    fn garbage_is_not_a_token() {
        let token = position(7_715_685_387_542_063_250, 1, 0x5E39_6628).to_string();
        let not_hex = format!("{}g", &token[1..]);
        let not_ascii = format!("{}é", &token[2..]);
        for garbage in [
            "",
            "0/5E396628",
            &token[1..],
            &format!("{token}0"),
            &not_hex,
            &not_ascii,
        ] {
            assert_eq!(WalPosition::parse(garbage), Err(NotAToken), "{garbage}");
        }
    }
}
