//! A stable sort that allocates nothing once its index buffer has grown: the engine sorts
//! each call's outputs (150-byte values) into rule-3 order, and `slice::sort_by` takes a
//! fresh heap scratch for anything beyond a few of them (issue 14: no allocation per
//! event). Indices are sorted instead (unstable, with the index as the tie-break, which is
//! stability) and the permutation is applied in place by swaps along its cycles.
use std::cmp::Ordering;

/// Sorts `v` by `cmp`, keeping equal elements in their order, like `v.sort_by(cmp)`;
/// `order` is scratch (its contents are overwritten; its capacity is what is reused).
pub fn stable_sort_reusing<T>(
    v: &mut [T],
    order: &mut Vec<u32>,
    mut cmp: impl FnMut(&T, &T) -> Ordering,
) {
    let n = v.len();
    if n < 2 {
        return;
    }
    debug_assert!(n <= u32::MAX as usize);
    order.clear();
    order.extend(0..n as u32);
    order.sort_unstable_by(|&a, &b| cmp(&v[a as usize], &v[b as usize]).then(a.cmp(&b)));
    permute(v, order, |i| i);
}

/// [`stable_sort_reusing`] comparing cached keys first: `key` must agree with `cmp` where
/// keys differ (`key(a) < key(b)` implies `cmp(a, b) == Less`), so `cmp` only decides
/// between equal keys. Keys are computed once per element, not at every comparison (the
/// engine's outputs compare by instant and ticket id, a pointer chase and a `memcmp`
/// each time otherwise). `scratch` is reused like `order` above.
pub fn stable_sort_by_key_reusing<T, K: Ord + Copy>(
    v: &mut [T],
    scratch: &mut Vec<(K, u32)>,
    key: impl Fn(&T) -> K,
    mut cmp: impl FnMut(&T, &T) -> Ordering,
) {
    let n = v.len();
    if n < 2 {
        return;
    }
    debug_assert!(n <= u32::MAX as usize);
    scratch.clear();
    scratch.extend(v.iter().enumerate().map(|(i, t)| (key(t), i as u32)));
    scratch.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| cmp(&v[a.1 as usize], &v[b.1 as usize]))
            .then(a.1.cmp(&b.1))
    });
    permute(v, scratch, |e| &mut e.1);
}

/// Puts the element at index `*at(&mut order[k])` into position `k`, for every `k`, in
/// place. Each cycle of the permutation is walked once, rotating it: the element first at
/// `start` is lifted out, each position of the cycle is filled from the one it takes its
/// element from, and the lifted element fills the last. A visited position is marked by
/// setting its index to itself. A cycle of `L` elements costs `L + 1` moves; swapping along
/// it cost `3 (L - 1)` (the engine's outputs are ~150-byte values moved by `memcpy` calls:
/// issue 14).
fn permute<T, I>(v: &mut [T], order: &mut [I], at: impl Fn(&mut I) -> &mut u32) {
    let n = v.len();
    assert_eq!(order.len(), n, "an index per element");
    let base = v.as_mut_ptr();
    for start in 0..n {
        if *at(&mut order[start]) as usize == start {
            continue;
        }
        // SAFETY: `start < n`. The element at `start` is read out, leaving a hole that
        // `hole` always describes: each step copies an element (at `src < n`, asserted)
        // into the hole and moves the hole to `src`, so every other position holds exactly
        // one element. On the cycle's end, or if anything in between panics, `Hole::drop`
        // writes the lifted element into the hole, so no element is lost or duplicated.
        // `src != hole.at` (a position marked visited is never reached again inside its
        // cycle), so the copies do not overlap.
        unsafe {
            let mut hole = Hole {
                value: std::mem::ManuallyDrop::new(std::ptr::read(base.add(start))),
                at: base.add(start),
            };
            let mut k = start;
            loop {
                let slot = at(&mut order[k]);
                let src = *slot as usize;
                *slot = k as u32;
                if src == start {
                    break;
                }
                assert!(src < n, "an index within the slice");
                std::ptr::copy_nonoverlapping(base.add(src), hole.at, 1);
                hole.at = base.add(src);
                k = src;
            }
        }
    }
}

/// The position a lifted element goes back to (see [`permute`]): written there on drop.
struct Hole<T> {
    value: std::mem::ManuallyDrop<T>,
    at: *mut T,
}

impl<T> Drop for Hole<T> {
    fn drop(&mut self) {
        // SAFETY: `at` is the one position of the slice without an element (see
        // `permute`), and `value` is not used after this.
        unsafe { std::ptr::copy_nonoverlapping(&*self.value, self.at, 1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Equal to the standard library's stable sort, ties included, with the buffer
        /// reused across calls.
        #[test]
        fn equals_std_stable_sort(runs in proptest::collection::vec(
            proptest::collection::vec((0u8..6, any::<u16>()), 0..80), 1..4)) {
            let mut order = Vec::new();
            for v in runs {
                let mut ours = v.clone();
                let mut std_sorted = v;
                stable_sort_reusing(&mut ours, &mut order, |a, b| a.0.cmp(&b.0));
                std_sorted.sort_by_key(|a| a.0);
                prop_assert_eq!(ours, std_sorted);
            }
        }

        /// Elements that own heap memory come out each exactly once (a lost or duplicated
        /// element would show as a different result, or a double free, in [`permute`]'s
        /// moves).
        #[test]
        fn owned_elements_are_moved_not_copied(v in proptest::collection::vec((0u8..4, "[a-z]{0,20}"), 0..60)) {
            let mut order = Vec::new();
            let mut ours = v.clone();
            let mut std_sorted = v;
            stable_sort_reusing(&mut ours, &mut order, |a, b| a.0.cmp(&b.0));
            std_sorted.sort_by_key(|a| a.0);
            prop_assert_eq!(ours, std_sorted);
        }

        /// The keyed variant too, with a key coarser than the order (ties of the key
        /// decided by the comparison, ties of both by position).
        #[test]
        fn keyed_equals_std_stable_sort(runs in proptest::collection::vec(
            proptest::collection::vec((0u8..6, 0u8..4, any::<u16>()), 0..80), 1..4)) {
            let mut scratch = Vec::new();
            for v in runs {
                let mut ours = v.clone();
                let mut std_sorted = v;
                stable_sort_by_key_reusing(&mut ours, &mut scratch, |a| a.0 / 2, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
                std_sorted.sort_by_key(|a| (a.0, a.1));
                prop_assert_eq!(ours, std_sorted);
            }
        }
    }
}
