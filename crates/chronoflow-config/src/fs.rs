//! The filesystem adapter: finds the layouts under a directory and reads their files into memory.
//! This is the crate's only IO; everything else works on [`RepoFiles`].

use std::fs;

use rayon::prelude::*;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::repo::{Layout, Repo, RepoFile, RepoFiles};

const ZIPLINE_DIRS: [&str; 5] = [
    "group_bys",
    "joins",
    "staging_queries",
    "models",
    "teams_metadata",
];

/// Finds the layouts under `root`:
/// - Airbnb: `root/production/` (or `root/compiled/production/`, as Chronon's quickstart has it);
/// - Zipline: `root/compiled/<kind>/`, or `root` itself when it is the `compiled/` directory.
pub fn detect_layouts(root: &Path) -> Vec<Layout> {
    let mut layouts = Vec::new();
    if root.join("production").is_dir() {
        layouts.push(Layout::Airbnb {
            prefix: String::new(),
        });
    } else if root.join("compiled/production").is_dir() {
        layouts.push(Layout::Airbnb {
            prefix: "compiled/".to_owned(),
        });
    } else if ZIPLINE_DIRS
        .iter()
        .any(|d| root.join("compiled").join(d).is_dir())
    {
        layouts.push(Layout::Zipline {
            prefix: "compiled/".to_owned(),
        });
    } else if ZIPLINE_DIRS.iter().any(|d| root.join(d).is_dir()) {
        layouts.push(Layout::Zipline {
            prefix: String::new(),
        });
    }
    layouts
}

/// Reads every file of every layout under `root`. Hidden files and directories are skipped.
pub fn read_repo_files(root: &Path) -> Result<RepoFiles, ConfigError> {
    if !root.is_dir() {
        return Err(ConfigError::Io {
            path: root.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
        });
    }
    let layouts = detect_layouts(root);
    if layouts.is_empty() {
        return Err(ConfigError::NotARepo {
            path: root.to_owned(),
        });
    }
    let mut paths = Vec::new();
    for layout in &layouts {
        match layout {
            Layout::Airbnb { prefix } => {
                let teams = root.join(prefix).join("teams.json");
                if teams.is_file() {
                    paths.push(teams);
                }
                walk(&root.join(prefix).join("production"), &mut paths)?;
            }
            Layout::Zipline { prefix } => {
                for dir in ZIPLINE_DIRS {
                    let d = root.join(prefix).join(dir);
                    if d.is_dir() {
                        walk(&d, &mut paths)?;
                    }
                }
            }
        }
    }
    // Reading is most of the IO; files are independent, so read them in parallel.
    let files = paths
        .par_iter()
        .map(|p| read_file(root, p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RepoFiles { layouts, files })
}

/// Reads and loads the repo under `root`.
pub fn load_repo(root: &Path) -> Result<Repo, ConfigError> {
    Ok(crate::repo::load(read_repo_files(root)?))
}

/// Collects the files under `dir`, sorted, skipping hidden entries.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let mut entries: Vec<(PathBuf, fs::FileType)> = fs::read_dir(dir)
        .map_err(|source| io_error(dir, source))?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<Result<_, _>>()
        .map_err(|source| io_error(dir, source))?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, file_type) in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        // Symlinks are followed: the type of what they point to decides.
        let file_type = if file_type.is_symlink() {
            fs::metadata(&path)
                .map_err(|source| io_error(&path, source))?
                .file_type()
        } else {
            file_type
        };
        if file_type.is_dir() {
            walk(&path, out)?;
        } else if file_type.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn read_file(root: &Path, path: &Path) -> Result<RepoFile, ConfigError> {
    let contents = fs::read(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    let relative = path.strip_prefix(root).unwrap_or(path);
    let path = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    Ok(RepoFile { path, contents })
}

fn io_error(path: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: path.to_owned(),
        source,
    }
}
