//! Delta Lake tables (issue 15): being written; the feature does not build until it lands.

compile_error!("the `delta` feature is not finished yet");
