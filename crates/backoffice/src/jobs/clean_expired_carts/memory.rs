//! An in-memory cart store for unit tests: the same contract as DynamoDB (paged index
//! reads, conditional deletes), plus hooks to inject what happens between two calls.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::store::{CartStore, DeleteOutcome, ExpiredCart, ExpiredPage, MalformedCart};
use crate::store::StoreError;

/// One index entry as a test wants it: a good cart or a malformed one.
#[derive(Debug, Clone)]
pub enum Entry {
    Cart { shard: String, expires_at: i64 },
    Malformed { shard: String, malformed: MalformedCart },
}

#[derive(Default)]
pub struct InMemoryCarts {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Cart ids whose next delete fails with a retryable error.
    failing_deletes: Mutex<Vec<String>>,
    /// Number of upcoming index reads that fail.
    failing_queries: Mutex<u32>,
    pages_read: Mutex<u32>,
}

impl InMemoryCarts {
    pub fn insert(&self, cart_id: &str, shard: &str, expires_at: i64) {
        self.lock().insert(
            cart_id.into(),
            Entry::Cart {
                shard: shard.into(),
                expires_at,
            },
        );
    }

    pub fn insert_malformed(&self, shard: &str, malformed: MalformedCart) {
        self.lock().insert(
            malformed.key.clone(),
            Entry::Malformed {
                shard: shard.into(),
                malformed,
            },
        );
    }

    pub fn remove(&self, cart_id: &str) {
        self.lock().remove(cart_id);
    }

    pub fn set_expiry(&self, cart_id: &str, expires_at: i64) {
        if let Some(Entry::Cart {
            expires_at: current, ..
        }) = self.lock().get_mut(cart_id)
        {
            *current = expires_at;
        }
    }

    pub fn contains(&self, cart_id: &str) -> bool {
        self.lock().contains_key(cart_id)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn fail_next_delete_of(&self, cart_id: &str) {
        self.failing_deletes.lock().unwrap().push(cart_id.into());
    }

    pub fn fail_next_queries(&self, count: u32) {
        *self.failing_queries.lock().unwrap() = count;
    }

    pub fn pages_read(&self) -> u32 {
        *self.pages_read.lock().unwrap()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap()
    }

    fn error(operation: &'static str) -> StoreError {
        StoreError {
            operation,
            table: "in-memory".into(),
            message: "injected failure".into(),
            retryable: true,
        }
    }
}

impl CartStore for InMemoryCarts {
    /// The last cart id returned, like DynamoDB's `LastEvaluatedKey`.
    type Cursor = String;

    async fn expired_page(
        &self,
        shard: &str,
        now: i64,
        cursor: Option<String>,
        limit: i32,
    ) -> Result<ExpiredPage<String>, StoreError> {
        {
            let mut failing = self.failing_queries.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(Self::error("Query"));
            }
        }
        *self.pages_read.lock().unwrap() += 1;
        let entries = self.lock();
        let due: Vec<(&String, &Entry)> = entries
            .iter()
            .filter(|(id, _)| cursor.as_ref().is_none_or(|after| *id > after))
            .filter(|(_, entry)| match entry {
                Entry::Cart { shard: s, expires_at } => s == shard && *expires_at <= now,
                Entry::Malformed { shard: s, .. } => s == shard,
            })
            .take(usize::try_from(limit).unwrap_or(0) + 1)
            .collect();
        let limit = usize::try_from(limit).unwrap_or(0);
        let next = (due.len() > limit).then(|| due[limit - 1].0.clone());
        let page: Vec<_> = due
            .into_iter()
            .take(limit)
            .map(|(id, entry)| match entry {
                Entry::Cart { expires_at, .. } => Ok(ExpiredCart {
                    cart_id: id.clone(),
                    expires_at: *expires_at,
                }),
                Entry::Malformed { malformed, .. } => Err(malformed.clone()),
            })
            .collect();
        Ok(ExpiredPage {
            foreign: 0,
            items_read: page.len() as u64,
            entries: page,
            next,
        })
    }

    async fn delete_if_expired(&self, cart_id: &str, now: i64) -> Result<DeleteOutcome, StoreError> {
        {
            let mut failing = self.failing_deletes.lock().unwrap();
            if let Some(position) = failing.iter().position(|id| id == cart_id) {
                failing.remove(position);
                return Err(Self::error("DeleteItem"));
            }
        }
        let mut entries = self.lock();
        match entries.get(cart_id) {
            None => Ok(DeleteOutcome::AlreadyGone),
            Some(Entry::Cart { expires_at, .. }) if *expires_at <= now => {
                entries.remove(cart_id);
                Ok(DeleteOutcome::Deleted)
            }
            Some(_) => Ok(DeleteOutcome::NotExpired),
        }
    }
}
