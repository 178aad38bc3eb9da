//! What the KV store holds and what requests send are data, not trusted: every decoder of stored
//! values gets random and damaged bytes, and a real embedded store serving the quickstart gets
//! hostile times, rows of another definition, rows from before rows were versioned and damaged
//! values. Each answer is a value or a clear error, never a panic (issue 11).
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use chronoflow_config::naming::{batch_dataset, streaming_dataset};
use chronoflow_config::{PartitionDate, Repo};
use chronoflow_engine::Warehouse;
use chronoflow_engine::aggregate::Out;
use chronoflow_engine::online::{BatchValue, OnlineRow, RowSchema, ServingInfo, StreamedRows};
use chronoflow_engine::partial::Partial;
use chronoflow_engine::value::{ScalarKind, Val};
use chronoflow_engine::window::DAY;
use chronoflow_serve::codec::{
    self, SERVING_INFO_KEY, StoredConfig, StoredServingInfo, StreamedRow,
};
use chronoflow_serve::kv::{KvStore, SharedKv};
use chronoflow_serve::{Fetcher, ServeError, upload};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value, json};

use common::{BATCH_DAY, quickstart, quickstart_warehouse, upload_group_by};

const RETURNS: &str = "quickstart.returns.v1";
const JOIN: &str = "quickstart.training_set.v2";

fn d(s: &str) -> PartitionDate {
    PartitionDate::parse(s).unwrap()
}

/// 2023-11-30 12:00, the day after the batch.
fn noon_after() -> i64 {
    d("2023-11-30").epoch_millis() + 12 * 3_600_000
}

/// A real warehouse with the quickstart's data, its GroupBys uploaded to a real embedded store
/// for the batch day, training_set.v2's metadata, and returns replayed after the batch day.
struct Served {
    dir: tempfile::TempDir,
    warehouse: Warehouse,
    repo: Repo,
    kv: SharedKv,
}

impl Served {
    async fn new() -> Served {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = quickstart_warehouse(dir.path()).await;
        let repo = chronoflow_config::fs::load_repo(&quickstart()).unwrap();
        let kv = SharedKv::new(dir.path().join("kv").display().to_string());
        let s = Served {
            dir,
            warehouse,
            repo,
            kv,
        };
        let store = s.kv.get().await.unwrap();
        for gb in ["purchases", "returns", "users"] {
            let loaded = s.repo.config(&format!("quickstart.{gb}.v1")).unwrap();
            upload_group_by(&s.warehouse, store.as_ref(), loaded).await;
        }
        let join = s.repo.config(JOIN).unwrap();
        let stored = upload::stored_config(&quickstart(), join).unwrap();
        upload::metadata_upload(store.as_ref(), join, stored)
            .await
            .unwrap();
        let returns = s.repo.config(RETURNS).unwrap();
        let report = upload::replay(
            &s.warehouse,
            store.as_ref(),
            returns,
            "data.returns",
            d(BATCH_DAY),
            &mut |_, _| {},
        )
        .await
        .unwrap();
        assert!(
            report.rows > 0,
            "the quickstart has returns after {BATCH_DAY}"
        );
        s
    }

    async fn store(&self) -> std::sync::Arc<dyn KvStore> {
        self.kv.get().await.unwrap()
    }

    fn fetcher(&self) -> Fetcher {
        Fetcher::new(self.kv.clone(), None)
    }
}

fn user(id: i64) -> Vec<Map<String, Value>> {
    match json!({ "user_id": id }) {
        Value::Object(m) => vec![m],
        _ => unreachable!(),
    }
}

/// A user with returns streamed after the batch day (and fetched before the replayed rows' times
/// would all be counted), and the key of its rows.
async fn user_with_streamed_rows(s: &Served) -> (i64, Vec<u8>) {
    let store = s.store().await;
    for id in 0..200 {
        let key = codec::key_bytes(&[Some(Val::Int(id))]);
        let rows = store
            .multi_get_appended(&streaming_dataset(RETURNS), std::slice::from_ref(&key))
            .await
            .unwrap();
        if !rows[0].is_empty() {
            return (id, key);
        }
    }
    panic!("no user has streamed returns");
}

#[tokio::test]
async fn fetch_at_min_i64_is_an_error_not_a_panic() {
    // `round_down` overflowed (`attempt to multiply with overflow`) for GroupBys with streamed
    // rows, through the Join route of the issue and the GroupBy route alike.
    let s = Served::new().await;
    let fetcher = s.fetcher();
    let (id, _) = user_with_streamed_rows(&s).await;
    for at in [
        i64::MIN,
        -9_223_372_036_000_000_000,
        -1,
        253_402_300_800_000,
        i64::MAX,
    ] {
        for result in [
            fetcher.fetch_join(JOIN, &user(id), at).await,
            fetcher.fetch_group_by(RETURNS, &user(id), at).await,
        ] {
            match result {
                Err(ServeError::BadRequest(message)) => {
                    assert!(
                        message.contains(&format!("at_millis {at} is outside")),
                        "{message}"
                    );
                    assert!(message.contains("1970-01-01"), "{message}");
                }
                other => panic!("at {at}: expected a bad request, got {other:?}"),
            }
        }
    }
    // A sane time still answers, with the streamed rows counted.
    let features = fetcher
        .fetch_join(JOIN, &user(id), noon_after())
        .await
        .unwrap();
    assert!(
        !features[0].keys().any(|k| k.ends_with("_exception")),
        "{features:?}"
    );
}

/// The returns.v1 features of `id` at `at`, as JSON.
async fn returns_of(fetcher: &Fetcher, id: i64, at: i64) -> Map<String, Value> {
    fetcher
        .fetch_group_by(RETURNS, &user(id), at)
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn streamed_rows_of_another_definition_are_skipped_not_a_panic() {
    // A streamed row whose `refund_amt` became a string hit `unreachable!` in the integer
    // partials; one with a column added made columns of different lengths.
    let s = Served::new().await;
    let fetcher = s.fetcher();
    let (id, key) = user_with_streamed_rows(&s).await;
    let before = returns_of(&fetcher, id, noon_after()).await;
    let stale_before = codec::stale_streamed_rows();

    let ts = noon_after() - 3_600_000;
    let day = d("2023-11-30");
    let string_row = OnlineRow {
        ts,
        day: ts.div_euclid(DAY),
        inputs: vec![Some(Val::Str("99".into()))],
        buckets: Vec::new(),
    };
    let wider_row = OnlineRow {
        inputs: vec![Some(Val::Int(99)), Some(Val::Int(1))],
        ..string_row.clone()
    };
    let store = s.store().await;
    let dataset = streaming_dataset(RETURNS);
    // Rows of another definition, tagged with its layout (as a replay under it writes them).
    let string_schema = RowSchema {
        inputs: vec![("refund_amt".to_owned(), ScalarKind::Str)],
        buckets: Vec::new(),
    };
    let wider_schema = RowSchema {
        inputs: vec![
            ("refund_amt".to_owned(), ScalarKind::Int),
            ("new_column".to_owned(), ScalarKind::Int),
        ],
        buckets: Vec::new(),
    };
    for (schema, row) in [(string_schema, &string_row), (wider_schema, &wider_row)] {
        let rows = vec![(vec![Some(Val::Int(id))], row.clone())];
        upload::append_streamed(store.as_ref(), &dataset, day, StreamedRows { schema, rows })
            .await
            .unwrap();
    }
    // A row appended before rows were versioned: no tag, no layout.
    let legacy = StreamedRow {
        origin: codec::Origin::Replay {
            day: day.epoch_millis() / DAY,
            position: 7,
        },
        row: OnlineRow {
            inputs: vec![Some(Val::Int(1_000))],
            ..string_row.clone()
        },
    };
    store
        .append(&dataset, vec![(key.clone(), codec::encode(&legacy))])
        .await
        .unwrap();

    // Not counted, and counted as skipped; the values are those without them.
    assert_eq!(returns_of(&fetcher, id, noon_after()).await, before);
    assert!(codec::stale_streamed_rows() >= stale_before + 3);

    // A row that claims the served layout but does not have it: a clear error, and for the Join
    // an exception of that part only.
    let info = served_info(store.as_ref()).await;
    let lying = StreamedRow {
        origin: codec::Origin::Replay {
            day: day.epoch_millis() / DAY,
            position: 8,
        },
        row: string_row.clone(),
    };
    store
        .append(
            &dataset,
            vec![(
                key.clone(),
                codec::encode_streamed(info.row_schema.fingerprint(), &lying),
            )],
        )
        .await
        .unwrap();
    let err = fetcher
        .fetch_group_by(RETURNS, &user(id), noon_after())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("refund_amt") && err.to_string().contains("replay"),
        "{err}"
    );
    let joined = fetcher
        .fetch_join(JOIN, &user(id), noon_after())
        .await
        .unwrap();
    let exception = joined[0]["quickstart_returns_v1_exception"]
        .as_str()
        .unwrap();
    assert!(exception.contains("refund_amt"), "{exception}");
    assert!(
        joined[0]
            .keys()
            .any(|k| k.starts_with("quickstart_purchases_v1_") && !k.ends_with("_exception")),
        "the other part still answers: {joined:?}"
    );
}

async fn served_info(store: &dyn KvStore) -> ServingInfo {
    let bytes = store
        .multi_get(&batch_dataset(RETURNS), &[SERVING_INFO_KEY.to_vec()])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    codec::decode::<StoredServingInfo>(&bytes, "info")
        .unwrap()
        .info
}

#[tokio::test]
async fn a_batch_uploaded_before_rows_were_versioned_is_a_clear_error() {
    // An embedded store written by the previous layout: its serving info under the old key.
    let s = Served::new().await;
    let store = s.store().await;
    let dataset = batch_dataset(RETURNS);
    let info = store
        .multi_get(&dataset, &[SERVING_INFO_KEY.to_vec()])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    store.begin_batch(&dataset, "old").await.unwrap();
    store
        .put_batch(&dataset, "old", vec![(b"\0serving_info".to_vec(), info)])
        .await
        .unwrap();
    store.commit_batch(&dataset, "old").await.unwrap();
    let err = s
        .fetcher()
        .fetch_group_by(RETURNS, &user(1), noon_after())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upload it again"), "{err}");
}

#[tokio::test]
async fn damaged_values_in_the_redb_file_are_a_clear_error_not_a_panic() {
    let s = Served::new().await;
    let (id, key) = user_with_streamed_rows(&s).await;
    let value = s
        .store()
        .await
        .multi_get(&batch_dataset(RETURNS), std::slice::from_ref(&key))
        .await
        .unwrap()
        .remove(0)
        .expect("the user has a batch value");
    assert!(value.len() >= 8, "{value:?}");
    let Served { dir, kv, .. } = s;
    drop(kv);

    // Overwrite the value's bytes in the file itself, wherever they are.
    let path = dir.path().join("kv");
    let mut file = std::fs::read(&path).unwrap();
    let mut damaged = 0;
    let mut at = 0;
    while let Some(i) = file[at..]
        .windows(value.len())
        .position(|w| w == value.as_slice())
    {
        file[at + i..at + i + value.len()].fill(0xFF);
        damaged += 1;
        at += i + value.len();
    }
    assert!(damaged > 0, "the value is stored as is");
    std::fs::write(&path, file).unwrap();

    let kv = SharedKv::new(path.display().to_string());
    let fetcher = Fetcher::new(kv, None);
    match fetcher
        .fetch_group_by(RETURNS, &user(id), noon_after())
        .await
    {
        Err(e) => assert!(
            e.to_string().contains("cannot be decoded") || e.to_string().contains("embedded"),
            "{e}"
        ),
        Ok(features) => panic!("damaged bytes served as features: {features:?}"),
    }
    // The Join answers, with that part's exception.
    let joined = fetcher
        .fetch_join(JOIN, &user(id), noon_after())
        .await
        .unwrap();
    assert!(
        joined[0].contains_key("quickstart_returns_v1_exception"),
        "{joined:?}"
    );
}

#[tokio::test]
async fn mutated_values_in_a_real_store_give_values_or_errors_never_a_panic() {
    let s = Served::new().await;
    let (id, key) = user_with_streamed_rows(&s).await;
    let store = s.store().await;
    let dataset = batch_dataset(RETURNS);
    let read = vec![SERVING_INFO_KEY.to_vec(), key.clone()];
    let original = store.multi_get(&dataset, &read).await.unwrap();
    let info = original[0].clone().unwrap();
    let value = original[1].clone().unwrap();
    let fetcher = s.fetcher();
    // Proptest's runner is synchronous: draw the mutations from it, and fetch here.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (mutation(), any::<bool>());
    for version in 0..60 {
        let (m, on_info) = strategy.new_tree(&mut runner).unwrap().current();
        let (info, value) = if on_info {
            (m.apply(&info), value.clone())
        } else {
            (info.clone(), m.apply(&value))
        };
        let v = format!("m{version}");
        store.begin_batch(&dataset, &v).await.unwrap();
        store
            .put_batch(
                &dataset,
                &v,
                vec![(SERVING_INFO_KEY.to_vec(), info), (key.clone(), value)],
            )
            .await
            .unwrap();
        store.commit_batch(&dataset, &v).await.unwrap();
        // A value or an error, and the fetcher keeps serving: the next round reads again.
        let _ = fetcher
            .fetch_group_by(RETURNS, &user(id), noon_after())
            .await;
        let _ = fetcher.fetch_join(JOIN, &user(id), noon_after()).await;
    }
}

/// A way to damage bytes: flip one, cut them short, or put random bytes in.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Replace(Vec<u8>),
}

impl Mutation {
    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        match self {
            Mutation::Flip(i, x) if !out.is_empty() => {
                let i = i % out.len();
                out[i] ^= x | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(n) => out.truncate(n % (out.len() + 1)),
            Mutation::Insert(i, extra) => {
                let i = i % (out.len() + 1);
                out.splice(i..i, extra.iter().copied());
            }
            Mutation::Replace(new) => out = new.clone(),
        }
        out
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Replace),
    ]
}

/// Valid encodings of every kind of stored value, to damage.
fn samples() -> Vec<Vec<u8>> {
    let row = OnlineRow {
        ts: 1_700_000_000_000,
        day: 19_675,
        inputs: vec![Some(Val::Int(5)), None, Some(Val::Str("x".into()))],
        buckets: vec![Some("b".to_owned())],
    };
    let temporal = BatchValue::Temporal {
        tiles: vec![
            vec![
                (0, Partial::IntSum(3, 2)),
                (DAY, Partial::Latest(vec![(1, Val::Float(0.5))])),
            ],
            vec![(i64::MIN, Partial::Counts([("a".to_owned(), 2)].into()))],
        ],
        rows: vec![row.clone()],
    };
    let finalized = BatchValue::Finalized(vec![
        Some(Out::Int(1)),
        None,
        Some(Out::Buckets(vec![(
            "b".to_owned(),
            Out::List(vec![Val::Bool(true)]),
        )])),
    ]);
    let config = StoredConfig {
        name: RETURNS.to_owned(),
        zipline: false,
        output_table: "default.quickstart_returns_v1".to_owned(),
        text: "{}".to_owned(),
    };
    let info = ServingInfo {
        group_by: RETURNS.to_owned(),
        batch_ds: BATCH_DAY.to_owned(),
        temporal: true,
        tiled: true,
        key_columns: vec!["user_id".to_owned()],
        key_kinds: vec![ScalarKind::Int],
        aggregation_kinds: Vec::new(),
        features: vec!["f".to_owned()],
        row_schema: RowSchema {
            inputs: vec![("refund_amt".to_owned(), ScalarKind::Int)],
            buckets: Vec::new(),
        },
    };
    let streamed = StreamedRow {
        origin: codec::Origin::Topic {
            topic: "events.returns".to_owned(),
            partition: 0,
            offset: 3,
            source: 0,
        },
        row,
    };
    vec![
        codec::encode(&temporal),
        codec::encode(&finalized),
        codec::encode(&StoredServingInfo {
            config: config.clone(),
            info,
        }),
        codec::encode(&config),
        codec::encode_streamed(42, &streamed),
        codec::key_bytes(&[Some(Val::Int(5)), Some(Val::Str("k".into()))]),
    ]
}

/// Every decoder of stored bytes, run on `bytes`: each gives a value or an error.
fn decode_everything(bytes: &[u8]) {
    let _ = codec::decode::<BatchValue>(bytes, "value");
    let _ = codec::decode::<StoredServingInfo>(bytes, "info");
    let _ = codec::decode::<StoredConfig>(bytes, "config");
    let _ = codec::decode::<StreamedRow>(bytes, "legacy streamed row");
    let _ = codec::key_of(bytes);
    for layout in [42, 0] {
        let _ = codec::decode_streamed(bytes, layout, "streamed row");
        let _ = codec::streamed_day(bytes);
        let _ = codec::streamed_rows(&[bytes.to_vec()], layout, "streamed rows");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn decoding_damaged_values_never_panics(
        sample in 0usize..6,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = samples().swap_remove(sample);
        for m in &mutations {
            bytes = m.apply(&bytes);
        }
        decode_everything(&bytes);
    }
}

#[test]
fn samples_decode_to_what_was_encoded() {
    let samples = samples();
    assert!(codec::decode::<BatchValue>(&samples[0], "v").is_ok());
    assert!(codec::decode::<BatchValue>(&samples[1], "v").is_ok());
    assert!(codec::decode::<StoredServingInfo>(&samples[2], "v").is_ok());
    assert!(
        codec::decode_streamed(&samples[4], 42, "v")
            .unwrap()
            .is_some()
    );
    assert!(
        codec::decode_streamed(&samples[4], 43, "v")
            .unwrap()
            .is_none()
    );
    assert!(codec::key_of(&samples[5]).is_some());
}

#[test]
fn deeply_nested_buckets_are_an_error_not_a_stack_overflow() {
    // Postcard follows serde's recursion: buckets of buckets 100,000 deep overflowed the stack
    // (an abort, not even a panic). Buckets now hold aggregates only.
    let mut bytes = vec![0, 1, 1]; // Finalized, one value, Some
    for _ in 0..100_000 {
        bytes.extend([6, 1, 1, b'a']); // Buckets, one bucket "a", holding...
    }
    bytes.push(0); // ...Int
    bytes.push(2); // 1, zigzag
    let err = codec::decode::<BatchValue>(&bytes, "nested").unwrap_err();
    assert!(err.to_string().contains("cannot be decoded"), "{err}");
}
