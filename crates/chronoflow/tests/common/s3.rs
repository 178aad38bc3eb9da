//! A real S3 API for the tests: moto's server (`moto[server]` from PyPI, which `.ci/run`
//! installs into `.ci-cache/`), started on a free port with one bucket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, http, wait_for_port};

/// `moto_server`: MOTO_SERVER_BIN, else the virtualenv `.ci/run` installs.
pub fn moto_server() -> Option<PathBuf> {
    if let Some(bin) = std::env::var("MOTO_SERVER_BIN")
        .ok()
        .filter(|b| !b.is_empty())
    {
        return Some(PathBuf::from(bin));
    }
    let cached =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci-cache/moto-5.2.5/bin/moto_server");
    cached.exists().then_some(cached)
}

/// Kills the process when the test ends, however it ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A moto S3 server on a free port with one bucket.
pub struct S3 {
    _server: Process,
    pub port: u16,
    pub bucket: String,
}

impl S3 {
    pub fn start(bin: &Path, dir: &Path) -> S3 {
        let port = free_port();
        let server = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("moto.log")).unwrap())
            .spawn()
            .unwrap();
        let server = Process(server);
        wait_for_port(port);
        let bucket = format!("chronoflow-{}", std::process::id());
        let (status, body) = http(port, "PUT", &format!("/{bucket}"), "");
        assert_eq!(status, 200, "creating bucket {bucket}: {body}");
        S3 {
            _server: server,
            port,
            bucket,
        }
    }

    /// The environment object_store reads (`AWS_*`) for this server, and a warehouse in it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "CHRONOFLOW_WAREHOUSE",
                format!("s3://{}/warehouse", self.bucket),
            ),
        ]
    }
}
