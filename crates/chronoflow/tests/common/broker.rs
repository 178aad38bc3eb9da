//! A real Kafka-protocol broker for the streaming tests: tansu (`cargo install tansu --version
//! 0.6.0 --locked --features libsql`; `.ci/run` installs it), one per test on a free port, its
//! storage a SQLite file in the test's directory so a stopped broker restarts with its records.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use super::free_port;

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

/// Where tansu is: `TANSU_BIN`, else on `PATH`, else `~/.cargo/bin`.
pub fn tansu() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = Path::new(&home).join(".cargo/bin/tansu");
        p.is_file().then_some(p)
    })
}

impl Broker {
    /// Starts a broker in `dir`, or `None` (saying why) when tansu is not installed; under
    /// `CI=true` a missing tansu fails the test instead.
    pub fn start(dir: &Path) -> Option<Broker> {
        let Some(bin) = tansu() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "tansu is not installed (CI=true): .ci/run installs it"
            );
            eprintln!(
                "tansu is not installed: skipping (cargo install tansu --version 0.6.0 --locked --features libsql)"
            );
            return None;
        };
        let dir = dir.join("broker");
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Broker {
            child: None,
            port: free_port(),
            dir,
            bin,
        };
        broker.resume();
        Some(broker)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process (again), on the same port and storage.
    pub fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(&self.dir)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not come up: {}",
                std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker process (kill -9): an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn client(&self) -> Client {
        ClientBuilder::new(vec![self.addr()]).build().await.unwrap()
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let client = self.client().await;
        client
            .controller_client()
            .unwrap()
            .create_topic(topic, partitions, 1, 5_000)
            .await
            .unwrap();
    }

    /// Produces `values` to `partition` of `topic`, in order, in chunks.
    pub async fn produce(&self, topic: &str, partition: i32, values: &[Vec<u8>]) {
        let client = self.client().await;
        let pc = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        for chunk in values.chunks(1_000) {
            let records = chunk
                .iter()
                .map(|v| Record {
                    key: None,
                    value: Some(v.clone()),
                    headers: Default::default(),
                    timestamp: chrono::Utc::now(),
                })
                .collect();
            pc.produce(records, Compression::NoCompression)
                .await
                .unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
