//! `dags`, `runs` and `tasks`: operations on the state store, without a running server.

use std::io::Write;
use std::process::ExitCode;

use chronoflow_scheduler::clock::{Clock, SystemClock};
use chronoflow_scheduler::store::{RunTrigger, Store};
use chronoflow_scheduler::timetable::iso;

use super::output::emit_bytes as write_out;
use super::service::{load_config, open_store, runtime, sync};
use crate::cli::{DagsCommand, ListFormat, RunsCommand, StateArgs, TasksCommand};

async fn store(state: &StateArgs) -> anyhow::Result<std::sync::Arc<Store>> {
    let config = load_config(state, std::path::Path::new("."))?;
    open_store(state, &config).await
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_out(text.as_bytes())
}

pub fn dags(command: DagsCommand) -> anyhow::Result<ExitCode> {
    if let DagsCommand::Sync { source, state } = &command {
        return sync(source, state);
    }
    runtime()?.block_on(async {
        let now = SystemClock.now_ms();
        match command {
            DagsCommand::Sync { .. } => unreachable!("handled above"),
            DagsCommand::List { state, format } => {
                let store = store(&state).await?;
                let dags = store.dags().await?;
                if format == ListFormat::Json {
                    return print_json(&serde_json::json!({ "dags": dags }));
                }
                let mut out = String::new();
                for d in dags.iter().filter(|d| !d.removed) {
                    let spec = store.spec(&d.dag_id, d.version).await?;
                    out.push_str(&format!(
                        "{:<48} v{:<3} {:<8} {:>5} tasks  {}\n",
                        d.dag_id,
                        d.version,
                        if d.paused { "paused" } else { "active" },
                        spec.tasks.len(),
                        match &spec.timetable {
                            chronoflow_scheduler::timetable::Timetable::Cron { expr } =>
                                format!("cron {expr}"),
                            chronoflow_scheduler::timetable::Timetable::Interval { minutes } =>
                                format!("every {minutes} min"),
                            chronoflow_scheduler::timetable::Timetable::Manual =>
                                "manual".to_owned(),
                        }
                    ));
                }
                if let Some((false, message, _)) = store.plan_status().await? {
                    out.push_str(&format!("\nthe last re-planning failed: {message}\n"));
                }
                write_out(out.as_bytes())
            }
            DagsCommand::Trigger {
                dag_id,
                start_ds,
                end_ds,
                step_days,
                state,
            } => {
                let store = store(&state).await?;
                let trigger = match step_days {
                    Some(step_days) => RunTrigger::Steps {
                        start_ds,
                        end_ds,
                        step_days,
                    },
                    None => RunTrigger::Manual { start_ds, end_ds },
                };
                let ids = store.trigger(&dag_id, trigger, now).await?;
                for id in ids {
                    println!("triggered {dag_id}/{id}");
                }
                Ok(())
            }
            DagsCommand::Backfill {
                dag_id,
                start_ds,
                end_ds,
                state,
            } => {
                let store = store(&state).await?;
                let ids = store
                    .trigger(&dag_id, RunTrigger::Backfill { start_ds, end_ds }, now)
                    .await?;
                println!("created {} run(s) of {dag_id}", ids.len());
                Ok(())
            }
            DagsCommand::Pause {
                dag_ids,
                all,
                state,
            } => set_paused(&state, dag_ids, all, true, now).await,
            DagsCommand::Unpause {
                dag_ids,
                all,
                state,
            } => set_paused(&state, dag_ids, all, false, now).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn set_paused(
    state: &StateArgs,
    dag_ids: Vec<String>,
    all: bool,
    paused: bool,
    now: i64,
) -> anyhow::Result<()> {
    let store = store(state).await?;
    let ids = if all {
        store.dags().await?.into_iter().map(|d| d.dag_id).collect()
    } else {
        if dag_ids.is_empty() {
            anyhow::bail!("name the DAGs, or give --all");
        }
        dag_ids
    };
    for id in &ids {
        store.set_paused(id, paused, now).await?;
    }
    println!(
        "{} {} DAG(s)",
        if paused { "paused" } else { "unpaused" },
        ids.len()
    );
    Ok(())
}

fn when(ms: Option<i64>) -> String {
    ms.map(iso).unwrap_or_else(|| "-".to_owned())
}

pub fn runs(command: RunsCommand) -> anyhow::Result<ExitCode> {
    let RunsCommand::List {
        dag,
        state_filter,
        limit,
        state,
        format,
    } = command;
    runtime()?.block_on(async {
        let store = store(&state).await?;
        let runs = store
            .runs(dag.as_deref(), state_filter.as_deref(), limit)
            .await?;
        if format == ListFormat::Json {
            return print_json(&serde_json::json!({ "runs": runs }));
        }
        let mut out = String::new();
        for r in runs {
            out.push_str(&format!(
                "{:<40} {:<48} {:<8} ds={} range={}..{} tasks_left={} started={} ended={}\n",
                r.dag_id,
                r.run_id,
                r.state,
                r.ds,
                r.start_ds,
                r.end_ds,
                r.unfinished,
                when(r.started_ms),
                when(r.ended_ms)
            ));
        }
        write_out(out.as_bytes())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn tasks(command: TasksCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match command {
            TasksCommand::List {
                dag_id,
                run_id,
                state,
                format,
            } => {
                let store = store(&state).await?;
                let tis = store.task_instances(&dag_id, &run_id).await?;
                if format == ListFormat::Json {
                    return print_json(&serde_json::json!({ "task_instances": tis }));
                }
                let mut out = String::new();
                for t in tis {
                    out.push_str(&format!(
                        "{:<56} {:<15} try={}/{} {}\n",
                        t.task_id,
                        t.state,
                        t.try_number,
                        t.max_tries,
                        t.error
                            .as_deref()
                            .map(|e| e.lines().next().unwrap_or(""))
                            .unwrap_or("")
                    ));
                }
                write_out(out.as_bytes())
            }
            TasksCommand::Clear {
                dag_id,
                run_id,
                task_id,
                downstream,
                state,
            } => {
                let store = store(&state).await?;
                let cleared = store
                    .clear(&dag_id, &run_id, &task_id, downstream, SystemClock.now_ms())
                    .await?;
                println!("cleared {}", cleared.join(", "));
                Ok(())
            }
            TasksCommand::Logs {
                dag_id,
                run_id,
                task_id,
                try_number,
                state,
            } => {
                let store = store(&state).await?;
                let text = chronoflow_scheduler::api::read_log(
                    &store, &dag_id, &run_id, &task_id, try_number,
                )
                .await?;
                write_out(text.as_bytes())
            }
        }
    })?;
    let _ = std::io::stdout().flush();
    Ok(ExitCode::SUCCESS)
}
