//! Tests of the clock block (`core::clocks`).
use super::*;
use crate::core::clock::ClockStatus;
use crate::core::time::Ts;

fn core(k: i64) -> ClockCore {
    ClockCore {
        status: ClockStatus::Running,
        nth: k as u16,
        start: Ts(k),
        ..Default::default()
    }
}

#[test]
fn idle_is_the_default() {
    assert_eq!(IDLE, ClockCore::default());
}

/// The block behaves as a `Box<[ClockCore]>` and a `Vec<u64>` side by side.
#[test]
fn block_behaves_as_a_slice_and_a_vec() {
    for n in [0usize, 1, 4, 6, 15, 16, 20] {
        let cores: Vec<ClockCore> = (0..n as i64).map(core).collect();
        let mut c = Clocks::new(&cores, &[], 0);
        let mut model: Vec<u64> = Vec::new();
        for h in 0..40u64 {
            if model.len() == model.capacity() {
                let add = if model.len() < 8 { 2 } else { 4 };
                model.reserve_exact(add);
                c.reserve_seen_exact(add);
            }
            model.push(h * 7919);
            c.push_seen(h * 7919);
            assert_eq!(c.seen().collect::<Vec<_>>(), &model[..]);
            assert_eq!(c.dense().as_slice(), &cores[..]);
            // The same hashes written in bulk, stopping where `next` gives `None`.
            let mut f = Clocks::new(&cores, &[], model.len() + 1);
            let mut it = model.iter().copied();
            assert_eq!(f.fill_seen(model.len(), || it.next()), Some(()));
            assert_eq!(f.seen().collect::<Vec<_>>(), &model[..]);
            let mut g = Clocks::new(&cores, &[], model.len() + 1);
            let mut it = model.iter().copied();
            assert_eq!(g.fill_seen(model.len() + 1, || it.next()), None);
            assert_eq!(g.seen().collect::<Vec<_>>(), &model[..]);
            assert_eq!(g.seen_capacity(), model.len() + 1);
            assert!(c.seen_capacity() >= c.seen().len());
        }
        let d = c.clone();
        assert_eq!(c, d);
        let mut w = c.dense();
        w.iter_mut().for_each(|x| x.warned = 1);
        c.store(&w);
        assert_eq!(c == d, n == 0);
        c.resize(n + 2);
        assert_eq!(c.len(), n + 2);
        assert_eq!(c.seen().collect::<Vec<_>>(), &model[..]);
        assert_eq!(c[n + 1], ClockCore::default());
        c.set_clocks(&[]);
        assert!(c.is_empty());
        assert_eq!(c.seen().collect::<Vec<_>>(), &model[..]);
    }
    let mut e = Clocks::default();
    assert!(e.is_empty() && e.seen().is_empty() && e.seen_capacity() == 0);
    e.reserve_seen_exact(3);
    e.push_seen(5);
    assert_eq!(e.seen().collect::<Vec<_>>(), [5]);
    // The last event: `Ts(0)` in the shared empty block (setting that keeps it shared),
    // any other instant takes a block of a header and the instant, kept through growth,
    // new clocks, closing and cloning.
    let mut e = Clocks::default();
    assert_eq!(e.last_event(), Ts(0));
    e.set_last_event(Ts(0));
    assert_eq!(e.heap_bytes(), 0);
    e.set_last_event(Ts(-5));
    assert_eq!((e.heap_bytes(), e.last_event()), (16, Ts(-5)));
    e.reserve_seen_exact(3);
    e.push_seen(9);
    e.set_clocks(&[core(1), IDLE]);
    e.set_closed_at(Some(Ts(4)));
    assert_eq!(
        (e.last_event(), e.seen().collect::<Vec<_>>(), e.closed_at()),
        (Ts(-5), vec![9], Some(Ts(4)))
    );
    assert_eq!(e.clone().last_event(), Ts(-5));
    assert_ne!(e, {
        let mut f = e.clone();
        f.set_last_event(Ts(6));
        f
    });
    let mut t = Clocks::default();
    t.set_closed_at(Some(Ts(3)));
    t.set_last_event(Ts(2));
    assert_eq!(
        (t.heap_bytes(), t.closed_at(), t.last_event()),
        (24, Some(Ts(3)), Ts(2))
    );
    assert_eq!(Clocks::open(3, 0, 10).seen_capacity(), 10);
    // Two clock starts' 32 bytes of room hold five more hashes.
    assert_eq!(Clocks::open(3, 2, 10).seen_capacity(), 15);
    assert_eq!(Clocks::open(3, 2, 10).dense().as_slice(), &[IDLE; 3][..]);
}

/// Clocks starting, changing and going back to idle, hashes recorded between, against
/// a dense model: every read, the room accounting and the block's size agree; a start
/// reallocates only when the room is short.
#[test]
fn sparse_block_equals_a_dense_model() {
    let mut next = crate::core::xorshift(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let n = (case % 19) as usize;
        let starts = next(n as u64 + 1) as usize;
        let mut c = Clocks::open(n, starts, 10);
        let mut model: Vec<ClockCore> = vec![IDLE; n];
        let mut seen: Vec<u64> = Vec::new();
        let mut closed: Option<Ts> = None;
        let mut fired: Option<u64> = None;
        let mut last = Ts(0);
        for step in 0..60 {
            match next(6) {
                0 if n > 0 => {
                    let i = next(n as u64) as usize;
                    model[i] = match next(3) {
                        0 => IDLE,
                        1 => core(step),
                        _ => ClockCore {
                            once_used: true,
                            ..IDLE
                        },
                    };
                    let before = c.heap_bytes();
                    let room = c.header().room as usize;
                    let stored_before = c.iter().filter(|k| !is_idle(k)).count();
                    if next(2) == 0 {
                        c.store(&model);
                    } else {
                        c.set(i, model[i]);
                    }
                    let stored = model.iter().filter(|k| !is_idle(k)).count();
                    if n <= SPARSE_MAX && stored > stored_before {
                        let need = CORE * (stored - stored_before);
                        if room >= need {
                            assert_eq!(c.heap_bytes(), before, "paid from the room");
                            assert_eq!(c.header().room as usize, room - need);
                        } else {
                            assert_eq!(c.header().room, 0, "grown exactly");
                            assert_eq!(c.heap_bytes(), before - room + need);
                        }
                    }
                }
                1 => {
                    let h = next(u64::MAX);
                    if c.seen_capacity() == seen.len() {
                        c.reserve_seen_exact(if seen.len() < 8 { 2 } else { 4 });
                    }
                    c.push_seen(h);
                    // Kept: the hash's low 48 bits.
                    seen.push(h & HASH_MASK);
                }
                2 => {
                    let d = c.clone();
                    assert_eq!(d, c);
                    assert_eq!(d.heap_bytes(), c.heap_bytes());
                }
                3 => {
                    // Closing takes a word of the room (grows by exactly one without
                    // room), reopening gives it back; the states and hashes stay.
                    let was = closed;
                    closed = (next(3) != 0).then_some(Ts(step * 1_000 - 7));
                    let (before, room) = (c.heap_bytes(), c.header().room as usize);
                    c.set_closed_at(closed);
                    let room_now = c.header().room as usize;
                    match (was.is_some(), closed.is_some()) {
                        (false, true) if room >= 8 => {
                            assert_eq!((c.heap_bytes(), room_now), (before, room - 8))
                        }
                        (false, true) if before > 0 => {
                            assert_eq!((c.heap_bytes(), room_now), (before - room + 8, 0))
                        }
                        (true, false) => assert_eq!((c.heap_bytes(), room_now), (before, room + 8)),
                        _ => assert_eq!(room_now, room),
                    }
                }
                4 => {
                    // A fired action's hash: a word added to the block (its room kept),
                    // given to the room when cleared; the closing instant, states and
                    // hashes stay.
                    let was = fired;
                    fired = (next(3) != 0).then(|| next(u64::MAX) ^ (1 << 63));
                    let (before, room) = (c.heap_bytes(), c.header().room as usize);
                    c.set_fired(fired);
                    let room_now = c.header().room as usize;
                    match (was.is_some(), fired.is_some()) {
                        (false, true) if before > 0 => {
                            assert_eq!((c.heap_bytes(), room_now), (before + 8, room))
                        }
                        (false, true) => assert_eq!((c.heap_bytes(), room_now), (24, 0)),
                        (true, false) => assert_eq!((c.heap_bytes(), room_now), (before, room + 8)),
                        _ => assert_eq!(room_now, room),
                    }
                }
                _ => {
                    // The last event is written in place: no room taken, nothing moves.
                    last = Ts(next(1 << 40) as i64 - (1 << 39));
                    let (before, room) = (c.heap_bytes(), c.seen_capacity());
                    c.set_last_event(last);
                    assert_eq!((c.heap_bytes(), c.seen_capacity()), (before, room));
                }
            }
            assert_eq!(c.last_event(), last);
            assert_eq!(c.closed_at(), closed);
            assert_eq!(c.fired(), fired);
            assert_eq!(c.len(), n);
            assert_eq!(c.dense().as_slice(), &model[..]);
            assert!(c.iter().eq(model.iter()));
            for (i, m) in model.iter().enumerate() {
                assert_eq!(&c[i], m);
            }
            assert_eq!(c.seen().collect::<Vec<_>>(), &seen[..]);
            // Read over the stored states: the clocks that are not idle, in order.
            let read: Vec<(usize, ClockCore)> = c.stored().map(|(i, x)| (i, *x)).collect();
            let want_read: Vec<(usize, ClockCore)> = (0..n)
                .filter(|&i| n > SPARSE_MAX || !is_idle(&model[i]))
                .map(|i| (i, model[i]))
                .collect();
            assert_eq!(read, want_read);
            // In place over the stored states: the clocks that are not idle, in order.
            let mut visited = Vec::new();
            c.for_each_stored(|i, x| {
                visited.push(i);
                assert_eq!(*x, model[i]);
                if !is_idle(x) {
                    x.nth = x.nth.wrapping_add(1);
                }
            });
            let want: Vec<usize> = (0..n)
                .filter(|&i| n > SPARSE_MAX || !is_idle(&model[i]))
                .collect();
            assert_eq!(visited, want);
            for &i in &want {
                if !is_idle(&model[i]) {
                    model[i].nth = model[i].nth.wrapping_add(1);
                }
            }
            assert_eq!(c.dense().as_slice(), &model[..]);
            let mut r = Clocks::new(&model, &seen, seen.len() + 1);
            r.set_last_event(last);
            if n <= SPARSE_MAX {
                let stored = model.iter().filter(|k| !is_idle(k)).count();
                assert_eq!(c.stored_len(), stored);
                // Restored: room for one more hash and for every idle clock to start.
                assert_eq!(r.header().room as usize, HASH + CORE * (n - stored));
            }
            assert_eq!(r == c, closed.is_none() && fired.is_none());
            r.set_fired(fired);
            assert_eq!(r == c, closed.is_none());
            r.set_closed_at(closed);
            assert_eq!(r, c);
            // Both words set the other way round, and through a re-match's rebuild.
            let mut q = Clocks::new(&model, &seen, seen.len() + 1);
            q.set_last_event(last);
            q.set_closed_at(closed);
            q.set_fired(fired);
            assert_eq!(q, c);
            let mut m = c.clone();
            m.resize(n + 1);
            assert_eq!(
                (m.fired(), m.closed_at(), m.last_event(), m.len()),
                (fired, closed, last, n + 1)
            );
            assert!(m.seen().eq(seen.iter().copied()));
        }
    }
}

/// A restored block (`Clocks::restored`: the closing instant and fired hash written as it
/// is built) equals the block built and then given its words (`set_closed_at`,
/// `set_fired`), for sparse and dense plans, idle clocks among the stored ones, and every
/// combination of the two words; its room is the hashes' capacity and the idle clocks'
/// starts (less the closing instant's word), and it takes no more bytes than the other.
#[test]
fn restored_block_equals_one_given_its_words_after() {
    for n in [0usize, 1, 5, 15, 16, 18] {
        let cores: Vec<ClockCore> = (0..n as i64)
            .map(|k| if k % 3 == 1 { IDLE } else { core(k + 1) })
            .collect();
        let idle = if n > SPARSE_MAX {
            0
        } else {
            cores.iter().filter(|c| is_idle(c)).count()
        };
        for seen in [0usize, 1, 9] {
            let hashes: Vec<u64> = (0..seen as u64).map(|h| h * 0x1_0000_0001 + 7).collect();
            for closed in [None, Some(Ts(1_234_567))] {
                for fired in [None, Some(0xdead_beef_u64)] {
                    let capacity = seen + 1 + closed.is_some() as usize;
                    let mut r = Clocks::restored(&cores, seen, capacity, closed, fired);
                    let mut it = hashes.iter().copied();
                    assert_eq!(r.fill_seen(seen, || it.next()), Some(()));
                    let mut old =
                        Clocks::with_words(&cores, &hashes, capacity, fired.is_some() as usize);
                    old.set_closed_at(closed);
                    old.set_fired(fired);
                    assert_eq!(r, old, "{n} clocks, {seen} hashes, {closed:?}, {fired:?}");
                    assert_eq!(r.closed_at(), closed);
                    assert_eq!(r.fired(), fired);
                    assert_eq!(r.dense().as_slice(), &cores[..]);
                    assert_eq!(r.seen().collect::<Vec<_>>(), hashes);
                    let room = (capacity * HASH + CORE * idle)
                        .saturating_sub(8 * closed.is_some() as usize)
                        - seen * HASH;
                    assert_eq!(r.header().room as usize, room);
                    assert!(r.heap_bytes() <= old.heap_bytes());
                    // The block stays usable: a hash and a closing change after it.
                    r.reserve_seen_exact(1);
                    r.push_seen(99);
                    r.set_closed_at(None);
                    old.reserve_seen_exact(1);
                    old.push_seen(99);
                    old.set_closed_at(None);
                    assert_eq!(r, old);
                }
            }
        }
    }
}
