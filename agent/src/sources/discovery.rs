//! Finding the files a source's globs match, and the directories to watch for changes.
//! A glob's literal prefix is the directory listed; `*` never crosses a `/`, `**` does.

use std::path::PathBuf;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// The compiled globs of one source.
#[derive(Debug, Clone)]
pub struct Discovery {
    set: GlobSet,
    /// For each pattern: its literal directory prefix (empty or ending in `/`, spelled
    /// as in the pattern so listed paths match it) and how deep to descend.
    roots: Vec<(String, usize)>,
}

/// How deep `**` may descend, to keep a scan bounded.
const MAX_DEPTH: usize = 8;

impl Discovery {
    /// Compiles `patterns` (already validated by the config).
    pub fn new(patterns: &[String]) -> Result<Discovery, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut roots = Vec::new();
        for pattern in patterns {
            builder.add(GlobBuilder::new(pattern).literal_separator(true).build()?);
            let meta = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
            let dir_end = pattern[..meta].rfind('/').map(|i| i + 1).unwrap_or(0);
            let dir = &pattern[..dir_end];
            let rest = &pattern[dir_end..];
            let depth = if rest.contains("**") {
                MAX_DEPTH
            } else {
                rest.matches('/').count()
            };
            roots.push((dir.to_string(), depth));
        }
        Ok(Discovery {
            set: builder.build()?,
            roots,
        })
    }

    /// The directories whose changes may change what matches.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.roots.iter().map(|(d, _)| listing_dir(d)).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Every regular file that matches now.
    pub fn scan(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (dir, depth) in &self.roots {
            self.walk(dir, *depth, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    fn walk(&self, prefix: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(listing_dir(prefix)) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = PathBuf::from(format!("{prefix}{}", entry.file_name().to_string_lossy()));
            if file_type.is_dir() {
                if depth > 0 {
                    self.walk(&format!("{}/", path.display()), depth - 1, out);
                }
            } else if (file_type.is_file() || file_type.is_symlink()) && self.set.is_match(&path) {
                out.push(path);
            }
        }
    }
}

impl Discovery {
    /// `path` as a file change notification names it (the watcher's spelling: usually
    /// absolute), spelled as the globs spell it, if one of them matches it: the path
    /// is taken relative to a pattern's listed directory (both resolved), then matched
    /// with that pattern's prefix in front. A path whose directory is gone matches
    /// nothing.
    pub fn match_event_path(&self, path: &std::path::Path) -> Option<PathBuf> {
        let name = path.file_name()?;
        let parent = std::fs::canonicalize(path.parent()?).ok()?;
        for (prefix, _) in &self.roots {
            let Ok(root) = std::fs::canonicalize(listing_dir(prefix)) else {
                continue;
            };
            let Ok(rel) = parent.strip_prefix(&root) else {
                continue;
            };
            let spelled = PathBuf::from(format!("{prefix}{}", rel.join(name).display()));
            if self.set.is_match(&spelled) {
                return Some(spelled);
            }
        }
        None
    }
}

fn listing_dir(prefix: &str) -> PathBuf {
    if prefix.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_paths_are_matched_as_the_globs_spell_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs/sub")).unwrap();
        let abs = dir.path().canonicalize().unwrap();
        let pattern = |p: &str| format!("{}/{p}", dir.path().display());
        let d = Discovery::new(&[pattern("logs/*.log"), pattern("logs/**/*.json")]).unwrap();
        assert_eq!(
            d.match_event_path(&abs.join("logs/app.log")),
            Some(PathBuf::from(pattern("logs/app.log")))
        );
        assert_eq!(
            d.match_event_path(&abs.join("logs/sub/x.json")),
            Some(PathBuf::from(pattern("logs/sub/x.json")))
        );
        assert_eq!(d.match_event_path(&abs.join("logs/app.log.1")), None);
        assert_eq!(d.match_event_path(&abs.join("logs/sub/x.log")), None);
        assert_eq!(d.match_event_path(&abs.join("gone/app.log")), None);
    }

    #[test]
    fn matches_files_at_the_right_depth() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().to_string();
        for f in ["a.log", "a.log.1", "b.txt", "sub/c.log", "sub/deep/d.log"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x\n").unwrap();
        }
        let names = |patterns: &[&str]| {
            let d = Discovery::new(
                &patterns
                    .iter()
                    .map(|p| format!("{root}/{p}"))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            d.scan()
                .iter()
                .map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&["*.log"]), ["a.log"]);
        assert_eq!(names(&["a.log*"]), ["a.log", "a.log.1"]);
        assert_eq!(names(&["*/*.log"]), ["sub/c.log"]);
        assert_eq!(
            names(&["**/*.log"]),
            ["a.log", "sub/c.log", "sub/deep/d.log"]
        );
        assert_eq!(names(&["a.log"]), ["a.log"]);
    }
}
