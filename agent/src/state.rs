//! The one state store under `data_dir`: file checkpoints, rule windows and alert
//! states, deployments, the notifier's groups and silences, and the outbox.
//!
//! It is a `redb` database: pure Rust, maintained, ACID with copy-on-write pages and a
//! checksummed commit, so a `kill -9` or power cut leaves the last committed transaction
//! intact. One file, one writer at a time; a second agent on the same `data_dir` is
//! refused with a clear error instead of corrupting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::event::{FileIdentity, FileMark};

/// `source \0 dev:ino` → JSON `Checkpoint`.
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("file_checkpoints");
/// Sources that have committed at least once: `start_at` applies only before that.
const SOURCES_SEEN: TableDefinition<&str, u64> = TableDefinition::new("sources_seen");
/// `"engine"` → JSON `rules::engine::EngineState`: rule windows, recorded series, alert
/// states and `for` timers.
const RULE_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("rule_state");
/// `"deployments"` → JSON `deploy::DeploymentState`: history, verdicts, sequential-test
/// state and per-version evidence.
const DEPLOY_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("deploy_state");
/// `"dispatcher"` → JSON `notify::dispatch::DispatchState` (aggregation groups, their
/// timers, the notification log); `"silences"` → JSON `notify::silence::Silences`.
const NOTIFY_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("notify_state");
/// Notification id → JSON `notify::outbox::OutboxEntry`: written before a notification is
/// sent, removed once the receiver acknowledged it.
const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create data_dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open state store {path}: {source}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("state store: {0}")]
    Db(#[from] redb::Error),
}

impl From<redb::TransactionError> for StateError {
    fn from(e: redb::TransactionError) -> Self {
        StateError::Db(e.into())
    }
}
impl From<redb::TableError> for StateError {
    fn from(e: redb::TableError) -> Self {
        StateError::Db(e.into())
    }
}
impl From<redb::StorageError> for StateError {
    fn from(e: redb::StorageError) -> Self {
        StateError::Db(e.into())
    }
}
impl From<redb::CommitError> for StateError {
    fn from(e: redb::CommitError) -> Self {
        StateError::Db(e.into())
    }
}

/// Where a file was last acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub path: String,
    pub identity: FileIdentity,
    pub offset: u64,
}

#[derive(Clone)]
pub struct StateStore {
    db: Arc<redb::Database>,
    path: PathBuf,
}

impl StateStore {
    pub fn open(data_dir: &Path) -> Result<StateStore, StateError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StateError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join("state.redb");
        let db = redb::Database::builder()
            // The working set is small; redb's default cache (1 GiB) would let it grow.
            .set_cache_size(4 * 1024 * 1024)
            .create(&path)
            .map_err(|source| StateError::Open {
                path: path.clone(),
                source,
            })?;
        let store = StateStore {
            db: Arc::new(db),
            path,
        };
        // Create the tables so that readers never see "table does not exist".
        let txn = store.db.begin_write()?;
        txn.open_table(CHECKPOINTS)?;
        txn.open_table(SOURCES_SEEN)?;
        txn.open_table(RULE_STATE)?;
        txn.open_table(DEPLOY_STATE)?;
        txn.open_table(NOTIFY_STATE)?;
        txn.open_table(OUTBOX)?;
        txn.commit()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoints of one source.
    pub fn checkpoints(&self, source: &str) -> Result<Vec<Checkpoint>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CHECKPOINTS)?;
        let prefix = format!("{source}\0");
        let mut out = Vec::new();
        for entry in table.range(prefix.as_str()..)? {
            let (key, value) = entry?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            if let Ok(checkpoint) = serde_json::from_slice::<Checkpoint>(value.value()) {
                out.push(checkpoint);
            }
        }
        Ok(out)
    }

    pub fn source_seen(&self, source: &str) -> Result<bool, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SOURCES_SEEN)?;
        Ok(table.get(source)?.is_some())
    }

    /// Applies acknowledged file marks in one transaction: the latest offset of each
    /// file, closed files forgotten, their sources marked as seen.
    pub fn commit_marks<'a>(
        &self,
        marks: impl IntoIterator<Item = &'a FileMark>,
        now_unix: u64,
    ) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(CHECKPOINTS)?;
            let mut seen = txn.open_table(SOURCES_SEEN)?;
            for mark in marks {
                let key = checkpoint_key(&mark.source, &mark.identity);
                if mark.closed {
                    table.remove(key.as_str())?;
                } else {
                    let checkpoint = Checkpoint {
                        path: mark.path.to_string(),
                        identity: mark.identity,
                        offset: mark.checkpoint,
                    };
                    let value = serde_json::to_vec(&checkpoint).unwrap_or_default();
                    table.insert(key.as_str(), value.as_slice())?;
                }
                if seen.get(&*mark.source)?.is_none() {
                    seen.insert(&*mark.source, now_unix)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl StateStore {
    /// Replaces the rule engine's saved state.
    pub fn save_rule_state(&self, state: &[u8]) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        txn.open_table(RULE_STATE)?.insert("engine", state)?;
        txn.commit()?;
        Ok(())
    }

    pub fn save_deploy_state(&self, state: &[u8]) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        txn.open_table(DEPLOY_STATE)?.insert("deployments", state)?;
        txn.commit()?;
        Ok(())
    }

    pub fn deploy_state(&self) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEPLOY_STATE)?;
        Ok(table.get("deployments")?.map(|v| v.value().to_vec()))
    }

    /// The rule engine's saved state, if any.
    pub fn rule_state(&self) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RULE_STATE)?;
        Ok(table.get("engine")?.map(|v| v.value().to_vec()))
    }
}

/// One write to the notifier's tables, applied in a single transaction so that the
/// notification log never says "sent" for a notification the outbox does not hold.
#[derive(Default)]
pub struct NotifyWrite<'a> {
    pub dispatcher: Option<&'a [u8]>,
    pub silences: Option<&'a [u8]>,
    /// Outbox entries to insert or replace, by notification id.
    pub put: Vec<(&'a str, &'a [u8])>,
    /// Outbox entries to remove (acknowledged or given up).
    pub remove: Vec<&'a str>,
}

impl StateStore {
    pub fn notify_write(&self, write: &NotifyWrite<'_>) -> Result<(), StateError> {
        let txn = self.db.begin_write()?;
        {
            let mut state = txn.open_table(NOTIFY_STATE)?;
            if let Some(bytes) = write.dispatcher {
                state.insert("dispatcher", bytes)?;
            }
            if let Some(bytes) = write.silences {
                state.insert("silences", bytes)?;
            }
            let mut outbox = txn.open_table(OUTBOX)?;
            for (id, bytes) in &write.put {
                outbox.insert(*id, *bytes)?;
            }
            for id in &write.remove {
                outbox.remove(*id)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The notifier's saved `"dispatcher"` or `"silences"`.
    pub fn notify_state(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NOTIFY_STATE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every outbox entry, by id.
    pub fn outbox(&self) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.push((key.value().to_string(), value.value().to_vec()));
        }
        Ok(out)
    }
}

fn checkpoint_key(source: &str, identity: &FileIdentity) -> String {
    format!("{source}\0{}:{}", identity.dev, identity.ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(ino: u64, offset: u64, closed: bool) -> FileMark {
        FileMark {
            source: "app".into(),
            path: "/x/app.log".into(),
            identity: FileIdentity {
                dev: 1,
                ino,
                fingerprint_len: 10,
                fingerprint: 99,
                complete: true,
            },
            checkpoint: offset,
            closed,
        }
    }

    #[test]
    fn checkpoints_survive_reopening_and_closed_files_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path()).unwrap();
            assert!(!store.source_seen("app").unwrap());
            store
                .commit_marks(
                    &[mark(1, 10, false), mark(2, 5, false), mark(1, 20, false)],
                    0,
                )
                .unwrap();
            store.commit_marks(&[mark(2, 7, true)], 0).unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.source_seen("app").unwrap());
        let checkpoints = store.checkpoints("app").unwrap();
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(checkpoints[0].offset, 20);
        assert!(store.checkpoints("other").unwrap().is_empty());
    }

    #[test]
    fn a_second_agent_on_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateStore::open(dir.path()).unwrap();
        let second = StateStore::open(dir.path());
        assert!(second.is_err());
    }
}
