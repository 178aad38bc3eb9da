//! The filesystem adapter: finds the layouts under a directory and reads their files into memory.
//! This is the crate's only IO; everything else works on [`RepoFiles`].

use std::collections::HashSet;
use std::fs;

use rayon::prelude::*;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::repo::{Layout, Repo, RepoFile, RepoFiles, UnreadableEntry};

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
    let mut walk = Walk {
        root,
        paths: Vec::new(),
        unreadable: Vec::new(),
        dirs_seen: HashSet::new(),
    };
    for layout in &layouts {
        match layout {
            Layout::Airbnb { prefix } => {
                let teams = root.join(prefix).join("teams.json");
                if teams.is_file() {
                    walk.paths.push(teams);
                }
                walk.dir(&root.join(prefix).join("production"))?;
            }
            Layout::Zipline { prefix } => {
                for dir in ZIPLINE_DIRS {
                    let d = root.join(prefix).join(dir);
                    if d.is_dir() {
                        walk.dir(&d)?;
                    }
                }
            }
        }
    }
    // Reading is most of the IO; files are independent, so read them in parallel.
    let read: Vec<Result<RepoFile, UnreadableEntry>> =
        walk.paths.par_iter().map(|p| read_file(root, p)).collect();
    let mut unreadable = walk.unreadable;
    let mut files = Vec::with_capacity(read.len());
    for r in read {
        match r {
            Ok(f) => files.push(f),
            Err(u) => unreadable.push(u),
        }
    }
    Ok(RepoFiles {
        layouts,
        files,
        unreadable,
    })
}

/// Reads and loads the repo under `root`.
pub fn load_repo(root: &Path) -> Result<Repo, ConfigError> {
    Ok(crate::repo::load(read_repo_files(root)?))
}

/// The files under a layout's directories. An entry that cannot be read (a dangling symlink, a
/// symlink loop, no permission) is recorded, not fatal, so one bad entry never hides the others.
struct Walk<'a> {
    root: &'a Path,
    paths: Vec<PathBuf>,
    unreadable: Vec<UnreadableEntry>,
    /// Directories read so far, resolved: a symlink back to one of them is a loop.
    dirs_seen: HashSet<PathBuf>,
}

impl Walk<'_> {
    /// Collects the files under `dir`, sorted, skipping hidden entries. Only the layout's own
    /// directory failing to list is an error.
    fn dir(&mut self, dir: &Path) -> Result<(), ConfigError> {
        if let Ok(resolved) = fs::canonicalize(dir) {
            self.dirs_seen.insert(resolved);
        }
        let mut entries: Vec<(PathBuf, fs::FileType)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
            match entry.and_then(|e| Ok((e.path(), e.file_type()?))) {
                Ok(e) => entries.push(e),
                Err(e) => self.unreadable(dir, format!("cannot list: {e}")),
            }
        }
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
                match fs::metadata(&path) {
                    Ok(m) => m.file_type(),
                    Err(e) => {
                        self.unreadable(&path, format!("a symlink that cannot be followed: {e}"));
                        continue;
                    }
                }
            } else {
                file_type
            };
            if file_type.is_dir() {
                let resolved = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if self.dirs_seen.contains(&resolved) {
                    self.unreadable(
                        &path,
                        format!("a symlink loop: {} is read already", resolved.display()),
                    );
                    continue;
                }
                if let Err(e) = self.dir(&path) {
                    self.unreadable(&path, e.to_string());
                }
            } else if file_type.is_file() {
                self.paths.push(path);
            }
        }
        Ok(())
    }

    fn unreadable(&mut self, path: &Path, reason: String) {
        self.unreadable.push(UnreadableEntry {
            path: relative(self.root, path),
            reason,
        });
    }
}

fn read_file(root: &Path, path: &Path) -> Result<RepoFile, UnreadableEntry> {
    match fs::read(path) {
        Ok(contents) => Ok(RepoFile {
            path: relative(root, path),
            contents,
        }),
        Err(e) => Err(UnreadableEntry {
            path: relative(root, path),
            reason: format!("cannot read: {e}"),
        }),
    }
}

/// `path` relative to the repo directory, `/`-separated.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn io_error(path: &Path, source: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: path.to_owned(),
        source,
    }
}
