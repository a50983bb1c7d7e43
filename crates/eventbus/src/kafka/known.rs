//! The partition counts of the cluster's topics as last seen, kept beside the outbox
//! (`partitions.json`), so that a bus started while the brokers cannot be reached still places
//! events by their key and keeps them in its outbox until the brokers are back, instead of
//! refusing every publish. Kafka's own producer needs live metadata for its first send to a topic
//! (it waits `max.block.ms`, then fails); the outbox is there for outages, and this lets it
//! serve a restart during one too.
//!
//! A count changes only when an operator adds partitions; one that grew while the bus could not
//! see it places keys as before until the next metadata answer, as a producer with stale
//! metadata does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// The file in the outbox directory.
const FILE: &str = "partitions.json";

/// Partition counts by topic name, as last seen, and where they are kept.
pub(super) struct KnownPartitions {
    path: PathBuf,
    counts: Mutex<HashMap<String, u32>>,
}

impl KnownPartitions {
    /// What `outbox_dir` remembers. A file that cannot be read is left out, with a warning: the
    /// next metadata answer writes it again.
    pub(super) fn load(outbox_dir: &std::path::Path) -> Self {
        let path = outbox_dir.join(FILE);
        let counts = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "Ignoring the remembered partition counts");
                HashMap::new()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "Cannot read the remembered partition counts");
                HashMap::new()
            }
        };
        Self { path, counts: Mutex::new(counts) }
    }

    /// Whether any topic is remembered.
    pub(super) fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// What the brokers said of every topic: remembered in place of what was, and written to
    /// the file if it changed anything.
    pub(super) fn remember(&self, seen: &HashMap<String, u32>) {
        let mut counts = self.lock();
        if *counts == *seen {
            return;
        }
        counts.clone_from(seen);
        let text = serde_json::to_vec(&*counts).expect("a map of counts serialises");
        // Written under the lock: two writers would share the partial file.
        if let Err(error) = self.write(&text) {
            tracing::warn!(path = %self.path.display(), %error, "Cannot remember the partition counts");
        }
    }

    /// The count of `topic`, if remembered.
    pub(super) fn get(&self, topic: &str) -> Option<u32> {
        self.lock().get(topic).copied()
    }

    /// Every topic remembered, with its count.
    pub(super) fn all(&self) -> HashMap<String, u32> {
        self.lock().clone()
    }

    fn write(&self, text: &[u8]) -> std::io::Result<()> {
        let partial = self.path.with_extension("json.partial");
        std::fs::write(&partial, text)?;
        crate::private::file(&partial)?;
        std::fs::rename(&partial, &self.path)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_brokers_said_is_there_after_a_restart_and_a_damaged_file_is_ignored() {
        // Given a directory where a bus saw two topics
        let dir = tempfile::tempdir().unwrap();
        let known = KnownPartitions::load(dir.path());
        assert!(!known.any());
        known.remember(&HashMap::from([("bank.transactions".to_owned(), 3), ("t".to_owned(), 1)]));

        // When another bus loads it, then it knows both
        let again = KnownPartitions::load(dir.path());
        assert_eq!(again.all(), HashMap::from([("bank.transactions".to_owned(), 3), ("t".to_owned(), 1)]));
        assert_eq!(again.get("bank.transactions"), Some(3));
        // and what the brokers say later replaces it: a topic deleted since is forgotten
        again.remember(&HashMap::from([("bank.transactions".to_owned(), 6), ("u".to_owned(), 1)]));
        let later = KnownPartitions::load(dir.path());
        assert_eq!((later.get("bank.transactions"), later.get("t"), later.get("u")), (Some(6), None, Some(1)));

        // When the file is damaged, then it is ignored, not fatal
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(!KnownPartitions::load(dir.path()).any());
    }
}
