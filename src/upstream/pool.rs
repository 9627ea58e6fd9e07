//! The upstream pool: how many calls to WeChat run at once and how fast they start, across every
//! actor of the process, with fetches for a missing token ahead of proactive refreshes.
//!
//! A caller waits for a [`Permit`] before it sends its call and holds it until the answer is in.
//! Waiters queue in two classes, [`Priority::Urgent`] before [`Priority::Background`], first
//! come first served within a class. Only the head of the queue ever looks at the capacity or
//! the start-rate pacer, and it sleeps on a timer when only the pacer holds it back: nobody
//! polls in a loop. A waiter that is dropped (its caller gave up) leaves the queue at once.
//! A background waiter can be [promoted](Promotion) while it queues: a proactive refresh that a
//! caller has started waiting for (its token expired or was rejected meanwhile) moves to the
//! urgent queue, by its time of arrival.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A pacer timer that fires late (tokio's timers have millisecond resolution) lets the starts
/// it held back catch up by at most this much, so high start rates are reached without bursts:
/// over any second, at most `max_per_second` starts plus this slack's worth.
const PACER_SLACK: Duration = Duration::from_millis(2);

/// Which queue a call waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A credential with no valid token, or one WeChat rejected: callers are waiting for it.
    Urgent,
    /// A proactive refresh of a token that is still valid: it can wait.
    Background,
}

impl Priority {
    fn queue(self) -> usize {
        match self {
            Priority::Urgent => 0,
            Priority::Background => 1,
        }
    }
}

/// Lets the owner of a call move it ahead while it queues. Cloned into the call; the actor keeps
/// a clone and promotes it when a caller starts waiting for the refresh it is part of.
#[derive(Clone, Default)]
pub struct Promotion(Arc<Mutex<PromotionState>>);

#[derive(Default)]
struct PromotionState {
    urgent: bool,
    /// When the call got its slot: its latency is measured from here, not from the queue.
    granted_at: Option<std::time::Instant>,
    /// The waiter's place while it queues: its pool and id.
    queued: Option<(Weak<UpstreamPool>, u64)>,
}

impl Promotion {
    fn lock(&self) -> MutexGuard<'_, PromotionState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the call urgent: queued in the background, it moves to the urgent queue (by its
    /// arrival); not queued yet, it will queue as urgent; already sent, nothing changes.
    pub fn promote(&self) {
        let mut p = self.lock();
        if p.urgent {
            return;
        }
        p.urgent = true;
        if let Some((pool, id)) = p.queued.take() {
            if let Some(pool) = pool.upgrade() {
                pool.promote(id);
            }
        }
    }

    pub fn is_urgent(&self) -> bool {
        self.lock().urgent
    }

    /// When the call got its slot, if it has: the upstream latency histogram starts here, so
    /// time spent queued behind other calls is not reported as WeChat's.
    pub fn granted_at(&self) -> Option<std::time::Instant> {
        self.lock().granted_at
    }
}

impl std::fmt::Debug for Promotion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Promotion")
            .field("urgent", &self.is_urgent())
            .finish()
    }
}

/// Caps the calls in flight and their start rate. Shared by every client of the process.
pub struct UpstreamPool {
    max_concurrent: usize,
    /// Time between two starts; `None`: no rate cap.
    interval: Option<Duration>,
    state: Mutex<State>,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("max_concurrent", &self.max_concurrent)
            .field("interval", &self.interval)
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queue_depth())
            .finish()
    }
}

struct State {
    in_flight: usize,
    next_id: u64,
    /// Indexed by [`Priority::queue`]: urgent first. Within a class, by id, which is the
    /// order of arrival; a map, not a list, because a waiter polled again (an actor's context
    /// polls all of its futures when it wakes) must find its place without a scan of a queue
    /// that may hold 100,000 waiters at a cold start.
    queues: [BTreeMap<u64, Waker>; 2],
    /// The earliest time the pacer lets the next call start (the theoretical start time of a
    /// steady stream: late starts do not push it out beyond [`PACER_SLACK`]).
    next_start: Option<Instant>,
}

impl State {
    /// The id and waker of the waiter that goes next.
    fn head(&self) -> Option<(u64, &Waker)> {
        self.queues
            .iter()
            .find_map(|q| q.first_key_value().map(|(&id, w)| (id, w)))
    }

    /// Tells the head of the queue to look again, if there is room for it.
    fn wake_head(&self, max_concurrent: usize) {
        if self.in_flight < max_concurrent {
            if let Some((_, waker)) = self.head() {
                waker.wake_by_ref();
            }
        }
    }

    fn waker_mut(&mut self, id: u64) -> Option<&mut Waker> {
        let [urgent, background] = &mut self.queues;
        urgent.get_mut(&id).or_else(|| background.get_mut(&id))
    }

    fn remove(&mut self, id: u64) -> bool {
        self.queues.iter_mut().any(|q| q.remove(&id).is_some())
    }
}

impl UpstreamPool {
    /// `max_concurrent` calls at once (at least one); `max_per_second` starts per second, 0 for
    /// no cap.
    pub fn new(max_concurrent: usize, max_per_second: u32) -> Arc<UpstreamPool> {
        let interval = (max_per_second > 0).then(|| Duration::from_secs(1) / max_per_second.max(1));
        Arc::new(UpstreamPool {
            max_concurrent: max_concurrent.max(1),
            interval,
            state: Mutex::new(State {
                in_flight: 0,
                next_id: 0,
                queues: [BTreeMap::new(), BTreeMap::new()],
                next_start: None,
            }),
        })
    }

    /// Waits for a slot. Dropping the future gives up the place in the queue.
    pub fn acquire(self: &Arc<Self>, priority: Priority) -> Acquire {
        self.acquire_promotable(priority, Promotion::default())
    }

    /// Like [`acquire`](Self::acquire), queued as urgent once `promotion` is promoted, even
    /// while it already waits.
    pub fn acquire_promotable(
        self: &Arc<Self>,
        priority: Priority,
        promotion: Promotion,
    ) -> Acquire {
        Acquire {
            pool: self.clone(),
            priority,
            promotion,
            id: None,
            sleep: None,
        }
    }

    /// Moves waiter `id` from the background queue to the urgent one, where it takes its place
    /// by arrival: ahead of urgent waiters that came after it.
    fn promote(&self, id: u64) {
        let mut st = self.lock();
        let Some(waker) = st.queues[Priority::Background.queue()].remove(&id) else {
            return;
        };
        st.queues[Priority::Urgent.queue()].insert(id, waker);
        // It may head the queue now.
        st.wake_head(self.max_concurrent);
    }

    /// Calls waiting for a slot (`wxtoken_upstream_queue_depth`).
    pub fn queue_depth(&self) -> usize {
        let st = self.lock();
        st.queues.iter().map(BTreeMap::len).sum()
    }

    /// Calls holding a slot (`wxtoken_upstream_in_flight`).
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    // Every critical section is a few field updates with no await inside: a panic cannot leave
    // the counters half-updated, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the pacer lets the next call start, if that is later than `now`.
    fn pacer_wait(&self, st: &State, now: Instant) -> Option<Instant> {
        st.next_start.filter(|&at| at > now)
    }

    fn grant(&self, st: &mut State, now: Instant) {
        st.in_flight = st.in_flight.saturating_add(1);
        if let Some(interval) = self.interval {
            let floor = now.checked_sub(PACER_SLACK).unwrap_or(now);
            let base = st.next_start.map_or(now, |at| at.max(floor));
            st.next_start = Some(base + interval);
        }
    }
}

/// The right to have one call in flight; the slot is freed when it is dropped.
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct Permit {
    pool: Arc<UpstreamPool>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        st.wake_head(self.pool.max_concurrent);
    }
}

/// The future of [`UpstreamPool::acquire`].
pub struct Acquire {
    pool: Arc<UpstreamPool>,
    /// The queue it joins, unless `promotion` is urgent by then.
    priority: Priority,
    promotion: Promotion,
    /// Set while queued.
    id: Option<u64>,
    /// The pacer's timer, armed while this waiter heads the queue and only the pacer holds it.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        let this = self.get_mut();
        let pool = this.pool.clone();
        let id = match this.id {
            Some(id) => id,
            None => {
                // The promotion's lock first, then the pool's (the order `promote` takes them
                // in): a promotion either sees this waiter queued or comes before it joins.
                let promotion = this.promotion.clone();
                let mut p = promotion.lock();
                let priority = if p.urgent {
                    Priority::Urgent
                } else {
                    this.priority
                };
                let mut st = pool.lock();
                let id = st.next_id;
                st.next_id = st.next_id.wrapping_add(1);
                st.queues[priority.queue()].insert(id, cx.waker().clone());
                if priority == Priority::Background {
                    p.queued = Some((Arc::downgrade(&pool), id));
                }
                this.id = Some(id);
                id
            }
        };
        let mut st = pool.lock();
        loop {
            let is_head = st.head().is_some_and(|(head, _)| head == id);
            if !is_head || st.in_flight >= pool.max_concurrent {
                // Someone else goes first, or every slot is taken: a release or the removal of
                // the waiter ahead wakes us.
                if let Some(w) = st.waker_mut(id) {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                }
                return Poll::Pending;
            }
            let now = Instant::now();
            match pool.pacer_wait(&st, now) {
                None => {
                    st.remove(id);
                    this.id = None;
                    pool.grant(&mut st, now);
                    // The next in line may fit too (or must arm the pacer's timer).
                    st.wake_head(pool.max_concurrent);
                    // Not under the pool's lock: `promote` takes the two the other way round.
                    drop(st);
                    this.promotion.lock().granted_at = Some(std::time::Instant::now());
                    return Poll::Ready(Permit { pool: pool.clone() });
                }
                Some(at) => {
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    if sleep.deadline() != at {
                        sleep.as_mut().reset(at);
                    }
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // The timer fired: look again with the new time.
                }
            }
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let mut st = self.pool.lock();
            let was_head = st.head().is_some_and(|(head, _)| head == id);
            if st.remove(id) && was_head {
                // The next waiter may be able to go now, or must take over the pacer's timer.
                st.wake_head(self.pool.max_concurrent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A pool under test and the calls made on it: each call records its name and start time
    /// (from the bench's creation) when it gets its slot, then holds the slot for its `hold`.
    struct Bench {
        pool: Arc<UpstreamPool>,
        log: Rc<RefCell<Vec<(&'static str, Duration)>>>,
        t0: Instant,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Bench {
        fn new(max_concurrent: usize, max_per_second: u32) -> Bench {
            Bench {
                pool: UpstreamPool::new(max_concurrent, max_per_second),
                log: Rc::default(),
                t0: Instant::now(),
                tasks: Vec::new(),
            }
        }

        /// Spawns a call of `priority` that waits for a slot.
        fn call(&mut self, priority: Priority, name: &'static str, hold: Duration) {
            let acquire = self.pool.acquire(priority);
            self.spawn(acquire, name, hold);
        }

        /// Spawns a background call that `promotion` can move ahead.
        fn call_promotable(&mut self, promotion: &Promotion, name: &'static str, hold: Duration) {
            let acquire = self
                .pool
                .acquire_promotable(Priority::Background, promotion.clone());
            self.spawn(acquire, name, hold);
        }

        fn spawn(&mut self, acquire: Acquire, name: &'static str, hold: Duration) {
            let (log, t0) = (self.log.clone(), self.t0);
            self.tasks.push(tokio::task::spawn_local(async move {
                let _permit = acquire.await;
                log.borrow_mut().push((name, t0.elapsed()));
                tokio::time::sleep(hold).await;
            }));
        }

        /// Spawns a call of `priority` for each of `names`, one after the other, each given
        /// the time to queue before the next.
        async fn queue(&mut self, priority: Priority, names: &[&'static str], hold: Duration) {
            for name in names {
                self.call(priority, name, hold);
                settle().await;
            }
        }

        /// Waits for every call spawned so far, in the order they were spawned.
        async fn join(&mut self) {
            for t in self.tasks.drain(..) {
                t.await.unwrap();
            }
        }

        /// The calls in the order they started.
        fn order(&self) -> Vec<&'static str> {
            self.log.borrow().iter().map(|(n, _)| *n).collect()
        }

        /// Each call's start, in milliseconds after the bench was made.
        fn starts(&self) -> Vec<(&'static str, u128)> {
            self.log
                .borrow()
                .iter()
                .map(|(n, t)| (*n, t.as_millis()))
                .collect()
        }
    }

    async fn settle() {
        // Lets every ready task run; time is paused, so this takes no real time.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Runs `test` on a local set: the calls are spawned with `spawn_local`.
    async fn on_local(test: impl Future<Output = ()>) {
        tokio::task::LocalSet::new().run_until(test).await;
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_concurrent_in_flight() {
        on_local(async {
            let mut b = Bench::new(4, 0);
            for _ in 0..20 {
                b.call(Priority::Urgent, "c", Duration::from_millis(50));
            }
            settle().await;
            assert_eq!(b.pool.in_flight(), 4);
            assert_eq!(b.pool.queue_depth(), 16);
            b.join().await;
            assert_eq!(b.pool.in_flight(), 0);
            assert_eq!(b.pool.queue_depth(), 0);
            // Five waves of four, 50 ms apart.
            let starts: Vec<u128> = b.starts().iter().map(|(_, t)| *t).collect();
            for (i, s) in starts.iter().enumerate() {
                assert_eq!(*s, (i as u128 / 4) * 50, "start {i}: {starts:?}");
            }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn queued_background_calls_come_after_urgent_ones() {
        on_local(async {
            let mut b = Bench::new(1, 0);
            let hold = Duration::from_millis(10);
            b.queue(Priority::Background, &["running"], hold).await;
            // Background refreshes queued first, then cold requests.
            b.queue(Priority::Background, &["bg1", "bg2"], hold).await;
            b.queue(Priority::Urgent, &["urgent1", "urgent2"], hold)
                .await;
            b.join().await;
            assert_eq!(b.order(), ["running", "urgent1", "urgent2", "bg1", "bg2"]);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_promoted_background_call_overtakes_the_other_background_ones() {
        on_local(async {
            let mut b = Bench::new(1, 0);
            let hold = Duration::from_millis(10);
            b.queue(Priority::Background, &["running", "bg1", "bg2"], hold)
                .await;
            // Queued as a background refresh, then a caller starts waiting for it.
            let promotion = Promotion::default();
            b.call_promotable(&promotion, "promoted", hold);
            settle().await;
            b.call(Priority::Urgent, "urgent1", hold);
            settle().await;
            promotion.promote();
            b.call(Priority::Urgent, "urgent2", hold);
            settle().await;
            assert_eq!(b.pool.queue_depth(), 5);
            b.join().await;
            // Ahead of every call in the background, and of the urgent ones that came after
            // it: it has waited longest.
            assert_eq!(
                b.order(),
                ["running", "promoted", "urgent1", "urgent2", "bg1", "bg2"]
            );
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_promoted_before_it_queues_queues_as_urgent() {
        on_local(async {
            let mut b = Bench::new(1, 0);
            let hold = Duration::from_millis(10);
            b.call(Priority::Urgent, "running", hold);
            settle().await;
            b.call(Priority::Background, "bg1", hold);
            settle().await;
            let promotion = Promotion::default();
            promotion.promote();
            b.call_promotable(&promotion, "promoted", Duration::ZERO);
            b.join().await;
            assert_eq!(b.order(), ["running", "promoted", "bg1"]);
            assert!(promotion.is_urgent());
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn max_per_second_paces_starts() {
        on_local(async {
            // Ten a second, no concurrency limit to speak of: starts 100 ms apart.
            let mut b = Bench::new(1024, 10);
            for _ in 0..25 {
                b.call(Priority::Urgent, "c", Duration::ZERO);
            }
            b.join().await;
            let starts: Vec<u128> = b.starts().iter().map(|(_, t)| *t).collect();
            for (i, s) in starts.iter().enumerate() {
                assert_eq!(*s, i as u128 * 100, "start {i}: {starts:?}");
            }
            // Any one-second window holds at most ten starts.
            for w in starts.windows(11) {
                assert!(w[10] - w[0] >= 1000, "{w:?}");
            }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_lets_an_urgent_call_overtake_a_waiting_background_one() {
        on_local(async {
            let mut b = Bench::new(8, 1);
            let z = Duration::ZERO;
            b.call(Priority::Background, "first", z);
            settle().await;
            // The pacer holds this one for a second...
            b.call(Priority::Background, "bg", z);
            settle().await;
            tokio::time::advance(Duration::from_millis(300)).await;
            // ...and an urgent call arriving meanwhile takes that slot.
            b.call(Priority::Urgent, "urgent", z);
            b.join().await;
            assert_eq!(b.starts(), [("first", 0), ("urgent", 1000), ("bg", 2000)]);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_leaves_the_queue() {
        on_local(async {
            let mut b = Bench::new(1, 0);
            let hold = Duration::from_millis(100);
            b.call(Priority::Urgent, "running", hold);
            settle().await;
            // Gives up after 10 ms, long before the slot frees.
            let quitter = b.pool.acquire(Priority::Urgent);
            let gave_up = tokio::time::timeout(Duration::from_millis(10), quitter).await;
            assert!(gave_up.is_err());
            b.call(Priority::Background, "next", hold);
            settle().await;
            assert_eq!(b.pool.queue_depth(), 1, "only `next` waits");
            b.join().await;
            assert_eq!(b.starts(), [("running", 0), ("next", 100)]);
            assert_eq!(b.pool.in_flight(), 0);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_head_waiting_on_the_pacer_hands_the_timer_on() {
        on_local(async {
            let mut b = Bench::new(8, 2);
            let z = Duration::ZERO;
            b.call(Priority::Urgent, "first", z);
            b.join().await;
            // The head waits for the pacer (500 ms) and gives up at 100 ms.
            let head = b.pool.acquire(Priority::Urgent);
            b.call(Priority::Urgent, "second", z);
            assert!(tokio::time::timeout(Duration::from_millis(100), head)
                .await
                .is_err());
            b.join().await;
            assert_eq!(b.starts(), [("first", 0), ("second", 500)]);
        })
        .await;
    }
}
