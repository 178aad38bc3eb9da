//! Writes a synthetic Airbnb-layout repo of compiled configs shaped like Chronon's samples:
//! event and entity GroupBys with windowed aggregations, Joins that inline 2-4 of them, staging
//! queries whose outputs Joins read, chaining GroupBys over Joins, spread over teams.
//!
//! Usage: `gen-repo <out dir> [--configs N] [--teams T]` (defaults 10000 and 20). Deterministic.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A small deterministic generator (SplitMix64): the same arguments always write the same repo.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut configs = 10_000usize;
    let mut teams = 20usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--configs" => configs = args.next().context("--configs needs a number")?.parse()?,
            "--teams" => teams = args.next().context("--teams needs a number")?.parse()?,
            "-h" | "--help" => {
                println!("gen-repo <out dir> [--configs N] [--teams T]");
                return Ok(());
            }
            other if out.is_none() => out = Some(PathBuf::from(other)),
            other => bail!("unexpected argument {other:?}"),
        }
    }
    let out = out.context("usage: gen-repo <out dir> [--configs N] [--teams T]")?;
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let written = generate(&out, configs, teams.max(1))?;
    println!(
        "wrote {written} configs for {teams} teams under {}",
        out.display()
    );
    Ok(())
}

fn write(root: &Path, rel: &str, value: &Value) -> anyhow::Result<()> {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("relative path has a parent"))?;
    fs::write(&path, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn dependency(table: &str, lag: i64) -> String {
    let ds = if lag == 0 {
        "{{ ds }}".to_owned()
    } else {
        format!("{{{{ macros.ds_add(ds, -{lag}) }}}}")
    };
    json!({"name": format!("wait_for_{table}_ds"), "spec": format!("{table}/ds={ds}"), "start": null, "end": null}).to_string()
}

fn group_by(rng: &mut Rng, team: &str, name: &str, table: &str, entity: bool) -> Value {
    let windows: Vec<Value> = [3, 14, 30]
        .iter()
        .map(|d| json!({"length": d, "timeUnit": 1}))
        .collect();
    let mut aggregations = vec![
        json!({"inputColumn": "amount", "operation": 7, "argMap": {}, "windows": windows}),
        json!({"inputColumn": "amount", "operation": 6, "argMap": {}, "windows": windows}),
        json!({"inputColumn": "amount", "operation": 8, "argMap": {}, "windows": windows}),
        json!({"inputColumn": "amount", "operation": 13, "argMap": {"k": "10"}}),
    ];
    if rng.below(3) == 0 {
        aggregations.push(json!({"inputColumn": "category", "operation": 17, "argMap": {"k": "5"}, "windows": [{"length": 12, "timeUnit": 0}]}));
    }
    let query = json!({
        "selects": {"user_id": "user_id", "amount": "amount", "category": "category"},
        "timeColumn": "ts",
        "startPartition": "2023-01-01",
        "setups": [],
    });
    let source = if entity {
        json!({"entities": {"snapshotTable": table, "query": query}})
    } else {
        json!({"events": {"table": table, "query": query}})
    };
    let mut gb = json!({
        "metaData": {
            "name": name,
            "online": u8::from(rng.below(2) == 0),
            "customJson": json!({"lag": 0, "groupby_tags": null, "column_tags": {}}).to_string(),
            "dependencies": [dependency(table, 0)],
            "tableProperties": {"source": "chronon"},
            "outputNamespace": format!("{team}_db"),
            "team": team,
            "offlineSchedule": "@daily",
        },
        "sources": [source],
        "keyColumns": ["user_id"],
        "aggregations": aggregations,
    });
    if rng.below(10) == 0 {
        gb["backfillStartDate"] = json!("2023-01-01");
    }
    gb
}

fn generate(root: &Path, configs: usize, teams: usize) -> anyhow::Result<usize> {
    let mut rng = Rng(0x5eed);
    let team_names: Vec<String> = (0..teams).map(|t| format!("team_{t:02}")).collect();
    let mut team_json = serde_json::Map::new();
    team_json.insert(
        "default".to_owned(),
        json!({"namespace": "default", "common_env": {"VERSION": "latest"}}),
    );
    for t in &team_names {
        team_json.insert(
            t.clone(),
            json!({"description": "synthetic", "namespace": format!("{t}_db")}),
        );
    }
    write(root, "teams.json", &Value::Object(team_json))?;

    // Per team: 10% staging queries, 55% GroupBys, 35% Joins (each Join inlines 2-4 GroupBys
    // of its team and may read a staging query's output as its left side).
    let mut group_bys: Vec<Vec<Value>> = vec![Vec::new(); teams];
    let mut staging: Vec<Vec<String>> = vec![Vec::new(); teams];
    let mut written = 0;
    for i in 0..configs {
        let t = i % teams;
        let team = &team_names[t];
        let n = i / teams;
        let kind = match n % 20 {
            0 | 1 => 's',
            2..=12 => 'g',
            _ => 'j',
        };
        match kind {
            's' => {
                let name = format!("{team}.staging_{n}.v1");
                let source = format!("raw.events_{}", rng.below(200));
                write(
                    root,
                    &format!("production/staging_queries/{team}/staging_{n}.v1"),
                    &json!({
                        "metaData": {"name": name, "dependencies": [format!("{source}/ds={{{{ ds }}}}")], "outputNamespace": format!("{team}_db"), "team": team},
                        "query": format!("SELECT user_id, amount, category, ts, ds FROM {source} WHERE ds BETWEEN '{{{{ start_date }}}}' AND '{{{{ end_date }}}}'"),
                        "startPartition": "2023-01-01",
                    }),
                )?;
                staging[t].push(format!("{team}_db.{}", name.replace('.', "_")));
            }
            'g' => {
                let name = format!("{team}.features_{n}.v1");
                let table = format!("raw.events_{}", rng.below(200));
                let entity = rng.below(4) == 0;
                let gb = group_by(&mut rng, team, &name, &table, entity);
                write(
                    root,
                    &format!("production/group_bys/{team}/features_{n}.v1"),
                    &gb,
                )?;
                group_bys[t].push(gb);
            }
            _ => {
                if group_bys[t].is_empty() {
                    continue;
                }
                let name = format!("{team}.training_{n}.v1");
                let left_table = match staging[t].last() {
                    Some(s) if rng.below(2) == 0 => s.clone(),
                    _ => format!("raw.checkouts_{}", rng.below(50)),
                };
                let mut parts: Vec<Value> = (0..2 + rng.below(3))
                    .map(|_| {
                        let gb = &group_bys[t][rng.below(group_bys[t].len() as u64) as usize];
                        json!({"groupBy": gb})
                    })
                    .collect();
                // A GroupBy drawn twice gets a prefix, as Chronon needs to tell its columns apart.
                for k in 1..parts.len() {
                    if parts[..k].iter().any(|p| {
                        p["groupBy"]["metaData"]["name"] == parts[k]["groupBy"]["metaData"]["name"]
                    }) {
                        parts[k]["prefix"] = json!(format!("p{k}"));
                    }
                }
                let mut deps = vec![dependency(&left_table, 0)];
                for p in &parts {
                    for d in p["groupBy"]["metaData"]["dependencies"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        deps.push(d.as_str().unwrap_or_default().to_owned());
                    }
                }
                // Online only if every part's GroupBy is online: fetches need their uploads.
                let online = rng.below(4) == 0
                    && parts
                        .iter()
                        .all(|p| p["groupBy"]["metaData"]["online"] == json!(1));
                write(
                    root,
                    &format!("production/joins/{team}/training_{n}.v1"),
                    &json!({
                        "metaData": {
                            "name": name, "online": u8::from(online), "production": 0,
                            "customJson": json!({"check_consistency": rng.below(10) == 0, "lag": 0}).to_string(),
                            "dependencies": deps, "tableProperties": {"source": "chronon"},
                            "outputNamespace": format!("{team}_db"), "team": team,
                            "samplePercent": 100.0, "offlineSchedule": "@daily",
                        },
                        "left": {"events": {"table": left_table, "query": {"selects": {"user_id": "user_id", "ts": "ts"}, "timeColumn": "ts", "startPartition": "2023-01-01"}}},
                        "joinParts": parts,
                    }),
                )?;
            }
        }
        written += 1;
    }
    Ok(written)
}
