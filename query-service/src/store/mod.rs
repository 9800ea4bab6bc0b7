//! The SQL of every query. Table names are formatted into the SQL text with the active
//! generation's schema (`"rm_1"."tasks"`), so statements prepared for one generation are never
//! reused for another; every value is a bind parameter.

pub mod audit;
pub mod lists;
pub mod tasks;
