//! Writing command output: to a file, or to standard output where a closed pipe (`| head`) ends
//! the output quietly instead of panicking.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

pub fn emit(text: &str, out: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = out {
        return std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("writing to standard output")
        }
        _ => Ok(()),
    }
}
