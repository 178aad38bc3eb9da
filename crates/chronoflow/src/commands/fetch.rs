//! `fetch` (one lookup from the command line) and `serve` (the HTTP fetcher).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chronoflow_serve::Fetcher;
use chronoflow_serve::http::{now_millis, parse_key_sets};
use chronoflow_serve::kv::SharedKv;
use chronoflow_serve::logging::FetchLogger;

use crate::cli::{FetchArgs, FetchType, ServeArgs};

pub fn fetch(args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let requests = parse_key_sets(args.keys.as_bytes()).map_err(|e| anyhow::anyhow!("-k: {e}"))?;
    let at = args.at_millis.unwrap_or_else(now_millis);
    let runtime = super::service::runtime()?;
    let results = runtime.block_on(async {
        let kv = SharedKv::new(args.kv.kv.clone());
        kv.get().await?;
        let fetcher = Fetcher::new(kv, None);
        let results = match args.kind {
            FetchType::Join => fetcher.fetch_join(&args.name, &requests, at).await,
            FetchType::GroupBy => fetcher.fetch_group_by(&args.name, &requests, at).await,
        };
        anyhow::Ok(results?)
    })?;
    let out: Vec<serde_json::Value> = requests
        .into_iter()
        .zip(results)
        .map(|(keys, features)| serde_json::json!({"keys": keys, "features": features}))
        .collect();
    let out = if out.len() == 1 {
        out.into_iter().next().expect("one")
    } else {
        serde_json::Value::Array(out)
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = super::service::runtime()?;
    runtime.block_on(async {
        // Bind first: a port that is taken must not leave a KV store or a log writer behind.
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let kv = SharedKv::new(args.kv.kv.clone());
        // Open now so a store that is locked or unreachable is reported at once; later outages
        // are reported per request.
        kv.get().await?;
        let logger = if args.no_fetch_log {
            None
        } else {
            let warehouse = args.warehouse.open(None)?;
            Some(FetchLogger::start(warehouse, Duration::from_secs(5)))
        };
        let fetcher = Arc::new(Fetcher::new(kv, logger.clone()));
        tracing::info!(address = %listener.local_addr()?, kv = %args.kv.kv, "fetcher listening");
        eprintln!("fetcher listening on http://{}", listener.local_addr()?);
        // SIGTERM as well as Ctrl-C: what a service manager sends, and the logger must drain.
        let mut stop = super::service::shutdown_signal();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        chronoflow_serve::http::serve(
            listener,
            fetcher,
            args.fetch_limits.limits(),
            args.server.limits(),
            shutdown,
        )
        .await?;
        if let Some(logger) = logger {
            let stats = logger.flush().await;
            tracing::info!(
                written = stats.written,
                dropped = stats.dropped,
                pending = stats.pending,
                "fetch log flushed"
            );
            if stats.dropped > 0 || stats.pending > 0 {
                tracing::warn!(
                    dropped = stats.dropped,
                    unwritten = stats.pending,
                    "fetch log records lost: the writer fell behind or the warehouse failed"
                );
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
