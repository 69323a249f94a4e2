//! The one walk over a sharded sparse index: every shard in turn, page by page, as a
//! stream, so that a job reads only what is due and holds one page at a time.
//!
//! Both scheduled jobs read their index this way (`clean-expired-carts` over
//! `expiry-index`, `request-reviews` over `review-pending-index`). The stream is lazy: the
//! next page is read when the consumer asks for it, so a consumer that keeps work in
//! flight while it asks (read-ahead) never waits on a page boundary.

use std::future::Future;

use futures::Stream;

use super::StoreError;
use super::shard::all_shards;

/// One page of a query on an index shard.
#[derive(Debug)]
pub struct IndexPage<Entry, Cursor> {
    pub entries: Vec<Entry>,
    /// Items DynamoDB read to answer (`ScannedCount`), for cost accounting.
    pub items_read: u64,
    /// Items of the index that are none of its entries at all (a kind another version of
    /// the code wrote): left where they are, and counted.
    pub foreign: u64,
    /// Where the next page of this shard starts; `None` on its last page.
    pub next: Option<Cursor>,
}

/// What the walk yields.
#[derive(Debug)]
pub enum Walked<Entry, Cursor> {
    Page(IndexPage<Entry, Cursor>),
    /// `stop` said to stop with shards or pages left: the run has more to do.
    StoppedEarly,
}

/// Every page of every shard, in shard order. `read_page(shard, cursor)` reads one page;
/// `stop()` is asked before each read. A failed read is yielded, then the walk ends.
pub fn walk_shards<'a, Entry, Cursor, Read, Fut>(
    read_page: Read,
    stop: impl Fn() -> bool + 'a,
) -> impl Stream<Item = Result<Walked<Entry, Cursor>, StoreError>> + 'a
where
    Entry: 'a,
    Cursor: 'a,
    Read: Fn(String, Option<Cursor>) -> Fut + 'a,
    Fut: Future<Output = Result<IndexPage<Entry, Cursor>, StoreError>> + 'a,
{
    struct Position<Cursor> {
        shards: std::vec::IntoIter<String>,
        current: Option<(String, Option<Cursor>)>,
        done: bool,
    }
    let start = Position {
        shards: all_shards().collect::<Vec<_>>().into_iter(),
        current: None,
        done: false,
    };
    futures::stream::unfold((start, read_page, stop), |(mut at, read_page, stop)| async move {
        if at.done {
            return None;
        }
        let (shard, cursor) = match at.current.take() {
            Some(position) => position,
            None => (at.shards.next()?, None),
        };
        if stop() {
            at.done = true;
            return Some((Ok(Walked::StoppedEarly), (at, read_page, stop)));
        }
        match read_page(shard.clone(), cursor).await {
            Ok(mut page) => {
                at.current = page.next.take().map(|next| (shard, Some(next)));
                page.next = None;
                Some((Ok(Walked::Page(page)), (at, read_page, stop)))
            }
            Err(cause) => {
                at.done = true;
                Some((Err(cause), (at, read_page, stop)))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use futures::StreamExt;

    use super::*;

    /// Shard "00" has three pages, "03" one, the others none.
    fn page(shard: &str, cursor: Option<u32>) -> Result<IndexPage<String, u32>, StoreError> {
        let pages = BTreeMap::from([("00", 3), ("03", 1)]);
        let count = pages.get(shard).copied().unwrap_or(0);
        let at = cursor.unwrap_or(0);
        if count == 0 {
            return Ok(IndexPage {
                entries: vec![],
                items_read: 0,
                foreign: 0,
                next: None,
            });
        }
        Ok(IndexPage {
            entries: vec![format!("{shard}/{at}")],
            items_read: 1,
            foreign: 0,
            next: (at + 1 < count).then_some(at + 1),
        })
    }

    fn entries(walked: Vec<Result<Walked<String, u32>, StoreError>>) -> Vec<String> {
        walked
            .into_iter()
            .filter_map(|w| match w {
                Ok(Walked::Page(page)) => Some(page.entries),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[tokio::test]
    async fn reads_every_page_of_every_shard_in_order() {
        let reads = Cell::new(0);
        let walked: Vec<_> = walk_shards(
            |shard, cursor| {
                reads.set(reads.get() + 1);
                std::future::ready(page(&shard, cursor))
            },
            || false,
        )
        .collect()
        .await;
        assert_eq!(entries(walked), ["00/0", "00/1", "00/2", "03/0"]);
        assert_eq!(reads.get(), 16 + 2, "one read per shard, plus the extra pages of 00");
    }

    #[tokio::test]
    async fn stops_when_told_and_says_so() {
        let reads = Cell::new(0);
        let walked: Vec<_> = walk_shards(
            |shard, cursor| {
                reads.set(reads.get() + 1);
                std::future::ready(page(&shard, cursor))
            },
            || reads.get() >= 2,
        )
        .collect()
        .await;
        assert!(matches!(walked.last(), Some(Ok(Walked::StoppedEarly))));
        assert_eq!(entries(walked), ["00/0", "00/1"]);
    }

    #[tokio::test]
    async fn a_failed_read_ends_the_walk_with_its_error() {
        let walked: Vec<_> = walk_shards(
            |shard, cursor: Option<u32>| {
                std::future::ready(if cursor == Some(1) {
                    Err(StoreError {
                        operation: "Query",
                        table: "t".into(),
                        message: "throttled".into(),
                        retryable: true,
                    })
                } else {
                    page(&shard, cursor)
                })
            },
            || false,
        )
        .collect()
        .await;
        assert_eq!(walked.len(), 2);
        assert!(matches!(&walked[1], Err(error) if error.retryable));
    }
}
