//! The states of the keys the recommender follows, at most a configured number of them: past
//! it, the key used least recently is forgotten (its next event starts a fresh history), so that
//! a feed of ever new account ids or symbols cannot grow the memory without bound.

use std::collections::{BTreeMap, HashMap};

use super::state::KeyState;

#[derive(Clone, Debug)]
pub(super) struct KeyStates<H> {
    max: usize,
    /// Each key's state and when it was last recorded.
    states: HashMap<String, (KeyState<H>, u64)>,
    /// The keys by when they were last recorded, the least recent first.
    by_use: BTreeMap<u64, String>,
    clock: u64,
}

impl<H> KeyStates<H> {
    /// At most `max` keys (at least one).
    pub(super) fn new(max: usize) -> Self {
        Self { max: max.max(1), states: HashMap::new(), by_use: BTreeMap::new(), clock: 0 }
    }

    pub(super) fn len(&self) -> usize {
        self.states.len()
    }

    pub(super) fn get(&self, key: &str) -> Option<&KeyState<H>> {
        self.states.get(key).map(|(state, _)| state)
    }

    /// Records `state` as the key's, as its most recent use; forgets the least recently used key
    /// if that makes one too many.
    pub(super) fn insert(&mut self, key: &str, state: KeyState<H>) {
        self.clock += 1;
        let used = self.clock;
        match self.states.get_mut(key) {
            Some((kept, at)) => {
                self.by_use.remove(at);
                (*kept, *at) = (state, used);
            }
            None => {
                self.states.insert(key.to_owned(), (state, used));
            }
        }
        self.by_use.insert(used, key.to_owned());
        if self.states.len() > self.max
            && let Some((_, oldest)) = self.by_use.pop_first()
        {
            self.states.remove(&oldest);
            tracing::debug!(key = %oldest, max = self.max, "Recommender forgot its least recently used key");
        }
    }
}

#[cfg(test)]
mod tests {
    use eventbus::Currency;

    use super::*;
    use crate::recommender::state::AccountHistory;

    fn state() -> KeyState<AccountHistory> {
        KeyState::new("USD".parse::<Currency>().unwrap())
    }

    #[test]
    fn past_the_bound_the_least_recently_used_key_is_forgotten() {
        // Given room for two keys, a and b, with a used again after b
        let mut keys = KeyStates::new(2);
        keys.insert("a", state());
        keys.insert("b", state());
        keys.insert("a", state());
        // When a third key comes
        keys.insert("c", state());
        // Then b, the least recently used, is forgotten, and a and c are kept
        assert_eq!(keys.len(), 2);
        assert!(keys.get("a").is_some() && keys.get("c").is_some() && keys.get("b").is_none());
    }

    #[test]
    fn ever_new_keys_never_hold_more_than_the_bound() {
        let mut keys = KeyStates::new(100);
        for n in 0..10_000 {
            keys.insert(&format!("acc_{n}"), state());
            assert!(keys.len() <= 100);
        }
        assert_eq!(keys.by_use.len(), 100, "the index holds exactly the kept keys");
        assert!(keys.get("acc_9999").is_some() && keys.get("acc_9899").is_none());
    }
}
