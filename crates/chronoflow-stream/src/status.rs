//! What a stream reports about itself: counters, per-partition lag, freshness. Written as JSON to
//! a status file about once a second (atomically: a reader never sees half of one), which the
//! worker supervising the stream copies into the state store for `/metrics`, the API and
//! `chronoflow streams list`.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub group_by: String,
    /// The topics read, comma-separated.
    pub topic: String,
    /// `starting`, `running`, `retrying` (the broker or the KV store is unreachable) or
    /// `stopped`.
    pub state: String,
    pub pid: u32,
    pub updated_ms: i64,
    /// Records consumed (committed), malformed ones included.
    pub records_read: u64,
    /// Streamed rows stored in the KV store.
    pub rows_written: u64,
    /// Records skipped as malformed.
    pub malformed: u64,
    /// The latest event time seen (epoch millis).
    pub last_event_ms: Option<i64>,
    pub last_error: Option<String>,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read: every record before it is stored (or skipped) for good.
    pub committed_offset: i64,
    /// The broker's high watermark when last fetched.
    pub high_watermark: i64,
    pub lag: i64,
}

impl StreamStatus {
    pub fn total_lag(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag.max(0)).sum()
    }

    /// Writes the status to `path` through a temporary file and a rename.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    pub fn read(path: &Path) -> std::io::Result<StreamStatus> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }
}
