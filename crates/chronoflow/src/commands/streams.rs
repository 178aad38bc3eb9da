//! `streams list`: the streaming jobs as their supervisors last recorded them in the state store
//! (every worker's, as `GET /api/v1/streams` shows them).

use std::process::ExitCode;

use chronoflow_scheduler::clock::{Clock, SystemClock};
use chronoflow_scheduler::store::StreamingJob;

use super::output::emit_bytes;
use super::service::{load_config, open_store, runtime};
use crate::cli::{ListFormat, StreamsCommand};

pub fn run(command: StreamsCommand) -> anyhow::Result<ExitCode> {
    let StreamsCommand::List { state, format } = command;
    runtime()?.block_on(async {
        let config = load_config(&state, std::path::Path::new("."))?;
        let store = open_store(&state, &config).await?;
        let rows = store.streaming_jobs().await?;
        // Streams run in wall time, whatever clock the scheduler runs on.
        let now = SystemClock.now_ms();
        let text = match format {
            ListFormat::Json => {
                let streams: Vec<serde_json::Value> = rows
                    .into_iter()
                    .map(|row| chronoflow_scheduler::api::stream_view(row, now))
                    .collect();
                let mut text =
                    serde_json::to_string_pretty(&serde_json::json!({ "streams": streams }))?;
                text.push('\n');
                text
            }
            ListFormat::Text => table(&rows, now),
        };
        emit_bytes(text.as_bytes())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One line per stream: job, state, pid@host, restarts, records read, malformed records, total
/// lag, freshness (time since the newest event), and why it last exited while it is down.
fn table(rows: &[StreamingJob], now: i64) -> String {
    if rows.is_empty() {
        return "no streams\n".to_owned();
    }
    let header = [
        "JOB",
        "STATE",
        "PID@HOST",
        "RESTARTS",
        "RECORDS",
        "MALFORMED",
        "LAG",
        "FRESHNESS",
    ];
    let count = |n: Option<i64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let lines: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.job_id.clone(),
                r.observed_state(now).to_owned(),
                format!("{}@{}", r.pid, r.host),
                r.restarts.to_string(),
                count(r.status_int("records_read")),
                count(r.status_int("malformed")),
                count(r.total_lag()),
                r.status_int("last_event_ms")
                    .map_or_else(|| "-".to_owned(), |t| age(now.saturating_sub(t))),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text left, numbers right.
            if i < 3 {
                out.push_str(&format!("{cell:<w$}  "));
            } else {
                out.push_str(&format!("{cell:>w$}  "));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = render(&header.map(str::to_owned));
    out.push('\n');
    for (line, row) in lines.iter().zip(rows) {
        out.push_str(&render(line));
        let down = matches!(row.observed_state(now), "backoff" | "failed");
        if let (true, Some(exit)) = (down, &row.last_exit) {
            out.push_str(&format!("  last exit: {}", exit_summary(exit)));
        }
        out.push('\n');
    }
    out
}

/// A last exit on one line: how it ended and, for a process, the last line of its output (the
/// error a consumer prints last), e.g. `"chronoflow" exited with status 2: error: ...`.
fn exit_summary(exit: &str) -> String {
    let mut lines = exit.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let how = first
        .split_once("; last lines of its output:")
        .map_or(first, |(how, _)| how);
    let summary = match lines.next_back() {
        Some(last) => format!("{how}: {last}"),
        None => how.to_owned(),
    };
    let mut short: String = summary.chars().take(200).collect();
    if short.len() < summary.len() {
        short.push('…');
    }
    short
}

/// `42s`, `17m`, `5h`, `3d`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_fit_on_one_line() {
        assert_eq!(exit_summary("boom"), "boom");
        assert_eq!(
            exit_summary(
                "\"cf\" exited with status 2; last lines of its output:\nstarting\nerror: no topic\n"
            ),
            "\"cf\" exited with status 2: error: no topic"
        );
        assert_eq!(exit_summary(&"x".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(119_999), "119s");
        assert_eq!(age(120_000), "2m");
        assert_eq!(age(3 * 3_600_000), "3h");
        assert_eq!(age(72 * 3_600_000), "3d");
    }
}
