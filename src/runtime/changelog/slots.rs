//! A bound on the restores a process runs at once.
//!
//! Each restore has a thread, a builder thread and one or two librdkafka clients of its
//! own (~20 threads in all, each with its allocator heap and buffers: ~1 MiB resident per
//! thread). Six partitions assigned at once used to restore side by side and made the
//! process's peak RSS the first second of its life (160 MiB with 134 threads, against
//! 41 MiB with 20 threads once restored). Reading and building a state partition is CPU
//! work, so restores beyond the cores finish no sooner; a restore that waits on the broker
//! instead (offsets held by an open transaction, an undecided transaction in the state
//! partition) gives its slot back at once, so a crashed owner's partitions still wait side
//! by side, not one after another.
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How often a restore waiting for a slot checks whether it is still wanted.
const WANTED_CHECK: Duration = Duration::from_millis(50);

/// A counting semaphore of restore slots, shared by a process's processing threads.
#[derive(Debug)]
pub struct RestoreSlots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl RestoreSlots {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Arc<RestoreSlots> {
        Arc::new(RestoreSlots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        })
    }

    /// Waits for a free slot; `None` as soon as `wanted` says the restore is no longer
    /// wanted (revoked, lost or reset while it queued).
    pub fn acquire(self: &Arc<Self>, wanted: impl Fn() -> bool) -> Option<RestoreSlot> {
        let mut free = self.lock();
        loop {
            if !wanted() {
                return None;
            }
            if *free > 0 {
                *free -= 1;
                return Some(RestoreSlot {
                    slots: Some(self.clone()),
                });
            }
            free = self
                .freed
                .wait_timeout(free, WANTED_CHECK)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Slots free now.
    pub fn free(&self) -> usize {
        *self.lock()
    }

    fn give_back(&self) {
        *self.lock() += 1;
        self.freed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A restore's slot, given back when dropped or when the restore starts waiting on the
/// broker ([`RestoreSlot::release`]).
#[derive(Debug)]
pub struct RestoreSlot {
    slots: Option<Arc<RestoreSlots>>,
}

impl RestoreSlot {
    /// Gives the slot back before the restore ends (idempotent): it now waits on the
    /// broker, not on this machine, and another partition may restore meanwhile.
    pub fn release(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.give_back();
        }
    }
}

impl Drop for RestoreSlot {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn no_more_restores_hold_a_slot_than_there_are_slots() {
        let slots = RestoreSlots::new(2);
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    let _slot = slots.acquire(|| true).expect("wanted");
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "two slots, six restores");
        assert_eq!(slots.free(), 2, "every slot given back");
    }

    #[test]
    fn a_released_slot_lets_the_next_restore_start_while_the_first_still_runs() {
        let slots = RestoreSlots::new(1);
        let mut first = slots.acquire(|| true).expect("free");
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || slots.acquire(|| true).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished(), "waits while the only slot is held");
        first.release();
        assert_eq!(waiter.join().unwrap(), Some(()));
        first.release();
        drop(first);
        assert_eq!(
            slots.free(),
            1,
            "released twice and dropped: given back once"
        );
    }

    #[test]
    fn a_restore_no_longer_wanted_stops_waiting_for_a_slot() {
        let slots = RestoreSlots::new(1);
        let _held = slots.acquire(|| true).expect("free");
        let wanted = Arc::new(AtomicBool::new(true));
        let waiter = {
            let (slots, wanted) = (slots.clone(), wanted.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let got = slots.acquire(|| wanted.load(Ordering::SeqCst)).is_some();
                (got, started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        wanted.store(false, Ordering::SeqCst);
        let (got, waited) = waiter.join().unwrap();
        assert!(!got, "cancelled, not granted");
        assert!(waited < Duration::from_secs(5), "stopped at its next check");
        assert_eq!(slots.free(), 0, "the held slot stays held");
    }
}
