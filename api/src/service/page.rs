//! A page of rows read with one row more than asked, which tells whether another page follows
//! without a second query.

/// A page of a list, and whether more rows follow it.
#[derive(Debug, Clone)]
pub struct Page<Row> {
    pub rows: Vec<Row>,
    pub has_next_page: bool,
}

impl<Row> Page<Row> {
    /// The page of `first` rows out of `rows`, read with `LIMIT first + 1`.
    pub fn from_one_extra(mut rows: Vec<Row>, first: u64) -> Self {
        let has_next_page = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Self {
            rows,
            has_next_page,
        }
    }

    /// Adds a row read with `LIMIT first + 1`, for pages filled one row at a time.
    pub fn push_one_extra(&mut self, row: Row, first: u64) {
        if self.rows.len() as u64 == first {
            self.has_next_page = true;
        } else {
            self.rows.push(row);
        }
    }
}

// Not derived: the derive would ask `Row: Default`.
impl<Row> Default for Page<Row> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            has_next_page: false,
        }
    }
}
