//! Writing command output: to a file, or to standard output where a closed pipe (`| head`) ends
//! the output quietly instead of panicking.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

pub fn emit(text: &str, out: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = out {
        return std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    }
    emit_bytes(text.as_bytes())
}

pub fn emit_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing to standard output")
        }
        _ => Ok(()),
    }
}
