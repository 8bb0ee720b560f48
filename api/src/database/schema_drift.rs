//! Compares what the `entity` crate declares with the tables the database really has, for
//! every entity: column by column (name, type, nullability, uniqueness and primary key), and
//! the foreign keys its `belongs_to` relations declare. A test runs it on a freshly migrated
//! database, so a migration and an entity cannot drift apart unnoticed; the same check finds a
//! table that someone altered by hand.

use std::fmt;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    PrimaryKeyToColumn, Statement,
    sea_query::{ColumnType, StringLen},
};

/// One way a column differs between an entity and its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDifference {
    pub table: String,
    pub column: String,
    pub problem: String,
}

impl fmt::Display for ColumnDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}: {}", self.table, self.column, self.problem)
    }
}

/// A column as declared by an entity or as found in the database.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
struct ColumnShape {
    name: String,
    /// As PostgreSQL's `format_type` spells it, e.g. `character varying(32)`.
    sql_type: String,
    nullable: bool,
    unique: bool,
    primary_key: bool,
}

/// Every difference between the entities of this service and the database.
pub async fn differences(db: &impl ConnectionTrait) -> Result<Vec<ColumnDifference>, DbErr> {
    let mut differences = compare(db, entity::station::Entity).await?;
    differences.extend(compare(db, entity::observation::Entity).await?);
    Ok(differences)
}

async fn compare<E: EntityTrait>(
    db: &impl ConnectionTrait,
    entity: E,
) -> Result<Vec<ColumnDifference>, DbErr> {
    let table = entity.table_name().to_owned();
    let declared = declared_columns::<E>();
    let Some(found) = database_columns(db, &table).await? else {
        return Ok(vec![ColumnDifference {
            column: "*".to_owned(),
            problem: "the table does not exist".to_owned(),
            table,
        }]);
    };

    let mut differences = Vec::new();
    let mut differ = |column: &str, problem: String| {
        differences.push(ColumnDifference {
            table: table.clone(),
            column: column.to_owned(),
            problem,
        });
    };
    for expected in &declared {
        let Some(actual) = found.iter().find(|column| column.name == expected.name) else {
            differ(
                &expected.name,
                "declared by the entity, missing from the table".into(),
            );
            continue;
        };
        if actual.sql_type != expected.sql_type {
            differ(
                &expected.name,
                format!(
                    "the entity declares type {}, the table has {}",
                    expected.sql_type, actual.sql_type
                ),
            );
        }
        if actual.nullable != expected.nullable {
            differ(
                &expected.name,
                format!(
                    "the entity declares it {}, the table has it {}",
                    null_word(expected.nullable),
                    null_word(actual.nullable)
                ),
            );
        }
        if actual.primary_key != expected.primary_key {
            differ(
                &expected.name,
                format!(
                    "the entity {} it as the primary key, the table {}",
                    if expected.primary_key {
                        "declares"
                    } else {
                        "does not declare"
                    },
                    if actual.primary_key {
                        "does"
                    } else {
                        "does not"
                    }
                ),
            );
        }
        if !expected.primary_key && actual.unique != expected.unique {
            differ(
                &expected.name,
                format!(
                    "the entity declares it {}, the table has {} unique constraint on it",
                    if expected.unique {
                        "unique"
                    } else {
                        "not unique"
                    },
                    if actual.unique { "a" } else { "no" }
                ),
            );
        }
    }
    for actual in &found {
        if !declared.iter().any(|column| column.name == actual.name) {
            differ(
                &actual.name,
                format!(
                    "the table has this {} column, the entity does not declare it",
                    actual.sql_type
                ),
            );
        }
    }
    let declared_keys = declared_foreign_keys::<E>();
    let found_keys = database_foreign_keys(db, &table).await?;
    for (keys, others, has, other_lacks) in [
        (
            &declared_keys,
            &found_keys,
            "the entity declares",
            "the table has none",
        ),
        (
            &found_keys,
            &declared_keys,
            "the table has",
            "the entity declares no such relation",
        ),
    ] {
        for key in keys.iter().filter(|key| !others.contains(key)) {
            let (table, column) = (&key.table, &key.references);
            differ(
                &key.column,
                format!("{has} a foreign key to {table}.{column}, {other_lacks}"),
            );
        }
    }
    Ok(differences)
}

/// A single-column foreign key: `column` references `table`.`references`.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
struct ForeignKey {
    column: String,
    table: String,
    references: String,
}

/// The foreign keys an entity's `belongs_to` relations declare.
fn declared_foreign_keys<E: EntityTrait>() -> Vec<ForeignKey> {
    use sea_orm::{Identity, RelationTrait, sea_query::TableRef};
    let single = |identity: &Identity| match identity {
        Identity::Unary(column) => Some(column.to_string()),
        _ => None,
    };
    E::Relation::iter()
        .map(|relation| relation.def())
        .filter(|relation| !relation.is_owner)
        .filter_map(|relation| {
            let table = match &relation.to_tbl {
                TableRef::Table(name, _) => name.1.to_string(),
                _ => return None,
            };
            Some(ForeignKey {
                column: single(&relation.from_col)?,
                table,
                references: single(&relation.to_col)?,
            })
        })
        .collect()
}

async fn database_foreign_keys(
    db: &impl ConnectionTrait,
    table: &str,
) -> Result<Vec<ForeignKey>, DbErr> {
    ForeignKey::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        r#"SELECT a.attname::text AS "column", t.relname::text AS "table",
                  r.attname::text AS "references"
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
           JOIN pg_class t ON t.oid = c.confrelid
           JOIN pg_attribute r ON r.attrelid = c.confrelid AND r.attnum = c.confkey[1]
           WHERE c.contype = 'f' AND c.conrelid = to_regclass($1)
             AND cardinality(c.conkey) = 1"#,
        [table.into()],
    ))
    .all(db)
    .await
}

fn null_word(nullable: bool) -> &'static str {
    if nullable { "NULL" } else { "NOT NULL" }
}

fn declared_columns<E: EntityTrait>() -> Vec<ColumnShape> {
    let primary_key: Vec<String> = E::PrimaryKey::iter()
        .map(|key| key.into_column().as_str().to_owned())
        .collect();
    E::Column::iter()
        .map(|column| {
            let definition = column.def();
            let name = column.as_str().to_owned();
            ColumnShape {
                sql_type: postgres_type_name(definition.get_column_type()),
                nullable: definition.is_null(),
                unique: definition.is_unique(),
                primary_key: primary_key.contains(&name),
                name,
            }
        })
        .collect()
}

/// The `format_type` spelling of the column types our entities use; anything else is named
/// so that the difference shows rather than passing silently.
fn postgres_type_name(column_type: &ColumnType) -> String {
    match column_type {
        ColumnType::Integer => "integer".to_owned(),
        ColumnType::BigInteger => "bigint".to_owned(),
        ColumnType::Text => "text".to_owned(),
        ColumnType::String(StringLen::N(length)) => format!("character varying({length})"),
        ColumnType::String(_) => "character varying".to_owned(),
        ColumnType::Double => "double precision".to_owned(),
        ColumnType::Boolean => "boolean".to_owned(),
        ColumnType::TimestampWithTimeZone => "timestamp with time zone".to_owned(),
        other => format!("{other:?} (not covered by the drift check)"),
    }
}

async fn database_columns(
    db: &impl ConnectionTrait,
    table: &str,
) -> Result<Option<Vec<ColumnShape>>, DbErr> {
    let backend = db.get_database_backend();
    let exists = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            "SELECT to_regclass($1) IS NOT NULL AS present",
            [table.into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "present"))
        .transpose()?
        .unwrap_or(false);
    if !exists {
        return Ok(None);
    }
    ColumnShape::find_by_statement(Statement::from_sql_and_values(
        backend,
        r#"SELECT a.attname::text AS name,
                  format_type(a.atttypid, a.atttypmod) AS sql_type,
                  NOT a.attnotnull AS nullable,
                  EXISTS (SELECT 1 FROM pg_index i
                          WHERE i.indrelid = a.attrelid AND i.indisunique
                            AND NOT i.indisprimary AND i.indpred IS NULL
                            AND i.indnatts = 1 AND i.indkey[0] = a.attnum) AS "unique",
                  EXISTS (SELECT 1 FROM pg_index i
                          WHERE i.indrelid = a.attrelid AND i.indisprimary
                            AND a.attnum = ANY (i.indkey)) AS primary_key
           FROM pg_attribute a
           WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum"#,
        [table.into()],
    ))
    .all(db)
    .await
    .map(Some)
}
