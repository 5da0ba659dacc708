//! Dead letters leave in batch order.
//!
//! Batches run concurrently, and a later batch can finish first: its units on healthy slots
//! answer while an earlier batch is still retrying a sick one. Enrichment records may overtake
//! each other that way, but dead letters must not: `redrive` re-applies them in topic order, and
//! verdicts do not commute (an ADD re-applied after its REMOVE would resurrect the entry). So each
//! batch takes a [`Turn`] when it is dispatched and publishes its dead letters only after every
//! earlier batch has published (and had acked) its own.

use std::sync::Mutex;

use tokio::sync::oneshot;

/// Hands out [`Turn`]s in dispatch order.
#[derive(Debug, Default)]
pub struct DeadLetterOrder {
    last: Mutex<Option<oneshot::Receiver<()>>>,
}

impl DeadLetterOrder {
    /// The next batch's turn; call in dispatch order (it is synchronous for that reason).
    pub fn next(&self) -> Turn {
        let (mine, next) = oneshot::channel();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let previous = last.replace(next);
        Turn { previous, mine }
    }
}

/// One batch's place in the dead-letter order.
#[derive(Debug)]
pub struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    mine: oneshot::Sender<()>,
}

impl Turn {
    /// Waits until every earlier batch has published its dead letters. (A batch that was
    /// dropped without passing counts as done.)
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = previous.await;
        }
    }

    /// Lets the next batch publish. Call after this batch's dead letters are acked.
    pub fn pass(self) {
        let _ = self.mine.send(());
    }

    /// For a batch without dead letters: lets the next batch go as soon as the previous one
    /// has, without making this batch wait.
    pub fn pass_after_previous(mut self) {
        match self.previous.take() {
            None => self.pass(),
            Some(mut previous) => match previous.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {
                    tokio::spawn(async move {
                        let _ = previous.await;
                        let _ = self.mine.send(());
                    });
                }
                _ => self.pass(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn turns_pass_in_dispatch_order_even_when_later_batches_finish_first() {
        let order = DeadLetterOrder::default();
        let mut first = order.next();
        let second = order.next();
        let mut third = order.next();
        let published = Arc::new(Mutex::new(Vec::new()));

        let log = Arc::clone(&published);
        let late = tokio::spawn(async move {
            third.wait().await;
            log.lock().unwrap().push(3);
            third.pass();
        });
        // The second batch has nothing to publish; the third must still wait for the first.
        second.pass_after_previous();
        tokio::task::yield_now().await;
        assert!(published.lock().unwrap().is_empty());

        first.wait().await;
        published.lock().unwrap().push(1);
        first.pass();
        late.await.unwrap();
        assert_eq!(*published.lock().unwrap(), vec![1, 3]);
    }

    /// How long a paused-time test lets a wait run before calling it blocked.
    const BLOCKED: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_dropped_turn_does_not_block_the_next() {
        let order = DeadLetterOrder::default();
        drop(order.next());
        let mut next = order.next();
        tokio::time::timeout(BLOCKED, next.wait())
            .await
            .expect("a dropped turn counts as passed");
        next.pass();
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_turn_blocks_the_next_until_it_passes_or_is_dropped() {
        let order = DeadLetterOrder::default();
        for release in [Turn::pass, drop] {
            let held = order.next();
            let mut next = order.next();
            let waiting = tokio::spawn(async move {
                next.wait().await;
                next
            });
            tokio::time::sleep(BLOCKED).await;
            assert!(
                !waiting.is_finished(),
                "the next turn waits while the earlier one is held"
            );
            release(held);
            tokio::time::timeout(BLOCKED, waiting)
                .await
                .expect("a passed or dropped turn lets the next one go")
                .unwrap()
                .pass();
        }
    }
}
