//! Which partitions this replica owns and where each one stands — restoring (with the epoch
//! of its restore request) or live — as plain data with the assignment rules as methods:
//! assign, revoke, lost, reset, restore finished / failed, readiness. The processor applies
//! what these return (pause, restore, seek, resume); no Kafka here.
//!
//! A restore reads state partition `p` once for every input topic's partition `p` and the
//! repartition topic's partition `p` it owns (they share the partition number), so requests
//! are grouped by partition number. Every request gets a fresh epoch; a restore result
//! whose epoch is no longer the one a partition waits for (revoked, lost or reset meanwhile)
//! is discarded.
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Which stage a partition feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The n-th input topic (an SLA engine).
    Input(usize),
    /// The surge repartition topic (a surge detector).
    Surge,
}

/// One owned partition.
pub type Key = (Source, i32);

/// Which consumer group an assignment came from: the input topics' (SLA engines) or the
/// repartition topic's (surge detectors). Each assigns on its own schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Input topics → SLA engines.
    Input,
    /// The repartition topic → surge detectors (consumer group `<group>.surge`).
    Surge,
}

/// Where an owned partition stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Its state is being read; the restore request had this epoch.
    Restoring { epoch: u64 },
    /// Restored and consuming.
    Live,
}

/// Restore state partition `partition` for these inputs (and the surge detector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePlan {
    pub partition: i32,
    pub inputs: Vec<usize>,
    pub surge: bool,
    pub epoch: u64,
}

/// The owned partitions.
#[derive(Debug, Default)]
pub struct Partitions {
    states: HashMap<Key, State>,
    last_epoch: u64,
    /// Each consumer group (input, surge) has assigned at least once: readiness needs
    /// both, or a replica whose surge partitions restored first would read ready before
    /// its input assignment (held state partitions included) arrived.
    joined: [bool; 2],
}

impl Partitions {
    pub fn new() -> Partitions {
        Partitions::default()
    }

    /// Newly assigned partitions of `role`'s group: each is restoring; one restore per
    /// partition number. Partitions already owned are left as they are.
    pub fn assign(&mut self, role: Role, keys: impl IntoIterator<Item = Key>) -> Vec<RestorePlan> {
        self.joined[role as usize] = true;
        let new: Vec<Key> = keys
            .into_iter()
            .filter(|k| !self.states.contains_key(k))
            .collect();
        self.plan(new)
    }

    /// Revoked (or lost) partitions: forgotten, whatever their state. Returns those that
    /// were live (their tasks are dropped).
    pub fn revoke(&mut self, keys: impl IntoIterator<Item = Key>) -> Vec<Key> {
        let mut live = Vec::new();
        for k in keys {
            if self.states.remove(&k) == Some(State::Live) {
                live.push(k);
            }
        }
        live.sort();
        live
    }

    /// Lost partitions of `role`'s group after an abort that discarded every partition's
    /// uncommitted work: the lost ones are forgotten, every other live one is restored
    /// again (restoring ones wrote nothing, their restores stand). The group is no longer
    /// joined (the member rejoins; readiness waits for its next assignment, as it would
    /// read ready owning nothing). Returns (lost live keys, restores).
    pub fn lost(
        &mut self,
        role: Role,
        keys: impl IntoIterator<Item = Key>,
        aborted: bool,
    ) -> (Vec<Key>, Vec<RestorePlan>) {
        self.joined[role as usize] = false;
        let dropped = self.revoke(keys);
        let plans = if aborted { self.reset() } else { Vec::new() };
        (dropped, plans)
    }

    /// Every live partition back to restoring (memory ran ahead of what Kafka holds).
    pub fn reset(&mut self) -> Vec<RestorePlan> {
        let live: Vec<Key> = self
            .states
            .iter()
            .filter(|(_, s)| **s == State::Live)
            .map(|(k, _)| *k)
            .collect();
        self.plan(live)
    }

    /// Forgets everything (the clients are recreated; the new assignment restores).
    pub fn clear(&mut self) {
        self.states.clear();
        self.joined = [false; 2];
    }

    /// A restore of `key` with `epoch` finished: whether it is still wanted (then it is
    /// live now).
    pub fn restored(&mut self, key: Key, epoch: u64) -> bool {
        match self.states.get_mut(&key) {
            Some(s) if *s == State::Restoring { epoch } => {
                *s = State::Live;
                true
            }
            _ => false,
        }
    }

    /// A restore with `epoch` of partition number `partition` failed: a new request for
    /// the keys still waiting for it, if any.
    pub fn restore_failed(&mut self, partition: i32, epoch: u64) -> Option<RestorePlan> {
        let waiting: Vec<Key> = self
            .states
            .iter()
            .filter(|(k, s)| k.1 == partition && **s == State::Restoring { epoch })
            .map(|(k, _)| *k)
            .collect();
        self.plan(waiting).pop()
    }

    pub fn state(&self, key: Key) -> Option<State> {
        self.states.get(&key).copied()
    }

    /// Partition numbers with something restoring.
    pub fn restoring_partitions(&self) -> usize {
        self.states
            .iter()
            .filter(|(_, s)| matches!(s, State::Restoring { .. }))
            .map(|(k, _)| k.1)
            .collect::<BTreeSet<i32>>()
            .len()
    }

    /// The epochs of the restores still waited for.
    pub fn restoring_epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.states.values().filter_map(|s| match s {
            State::Restoring { epoch } => Some(*epoch),
            State::Live => None,
        })
    }

    /// Ready: both groups joined, and nothing restoring.
    pub fn ready(&self) -> bool {
        self.joined == [true; 2] && self.restoring_partitions() == 0
    }

    /// Marks `keys` restoring under a fresh epoch per partition number.
    fn plan(&mut self, keys: Vec<Key>) -> Vec<RestorePlan> {
        let mut by_partition: BTreeMap<i32, (Vec<usize>, bool)> = BTreeMap::new();
        for (source, p) in keys {
            let e = by_partition.entry(p).or_default();
            match source {
                Source::Input(i) => e.0.push(i),
                Source::Surge => e.1 = true,
            }
        }
        by_partition
            .into_iter()
            .map(|(partition, (mut inputs, surge))| {
                inputs.sort_unstable();
                self.last_epoch += 1;
                let epoch = self.last_epoch;
                for &i in &inputs {
                    self.states
                        .insert((Source::Input(i), partition), State::Restoring { epoch });
                }
                if surge {
                    self.states
                        .insert((Source::Surge, partition), State::Restoring { epoch });
                }
                RestorePlan {
                    partition,
                    inputs,
                    surge,
                    epoch,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Source::*;

    /// `keys` assigned, with both groups joined (the surge group with whatever `keys` has
    /// of it: restores are planned from the keys, whichever group they came with).
    fn assign(ps: &mut Partitions, keys: impl IntoIterator<Item = Key>) -> Vec<RestorePlan> {
        ps.assign(Role::Surge, []);
        ps.assign(Role::Input, keys)
    }

    fn live(ps: &mut Partitions, plans: &[RestorePlan]) {
        for p in plans {
            for &i in &p.inputs {
                assert!(ps.restored((Input(i), p.partition), p.epoch));
            }
            if p.surge {
                assert!(ps.restored((Surge, p.partition), p.epoch));
            }
        }
    }

    #[test]
    fn assign_restores_once_per_partition_number() {
        let mut ps = Partitions::new();
        assert!(!ps.ready(), "not ready before the first assignment");
        let plans = assign(
            &mut ps,
            [(Input(1), 0), (Input(0), 0), (Surge, 0), (Input(0), 2)],
        );
        assert_eq!(plans.len(), 2);
        assert_eq!(
            plans[0],
            RestorePlan {
                partition: 0,
                inputs: vec![0, 1],
                surge: true,
                epoch: plans[0].epoch
            }
        );
        assert_eq!((plans[1].partition, plans[1].surge), (2, false));
        assert_ne!(plans[0].epoch, plans[1].epoch);
        assert_eq!(ps.restoring_partitions(), 2);
        assert!(!ps.ready());
        live(&mut ps, &plans);
        assert!(ps.ready());
        assert_eq!(ps.state((Input(0), 2)), Some(State::Live));
        // An empty assignment still counts as joined, once both groups have assigned.
        let mut empty = Partitions::new();
        assert!(empty.assign(Role::Input, []).is_empty());
        assert!(!empty.ready(), "the surge group has not assigned yet");
        assert!(empty.assign(Role::Surge, []).is_empty());
        assert!(empty.ready());
    }

    #[test]
    fn surge_partitions_restored_before_the_input_assignment_arrives_are_not_ready() {
        let mut ps = Partitions::new();
        let surge = ps.assign(Role::Surge, [(Surge, 0), (Surge, 1)]);
        live(&mut ps, &surge);
        assert!(!ps.ready(), "the input group has not assigned yet");
        let input = ps.assign(Role::Input, [(Input(0), 0), (Input(0), 1)]);
        assert_eq!(input.len(), 2, "the input partitions restore on their own");
        assert!(!ps.ready(), "input partitions restoring");
        live(&mut ps, &input);
        assert!(ps.ready());
    }

    #[test]
    fn assigning_an_owned_partition_again_changes_nothing() {
        let mut ps = Partitions::new();
        let plans = assign(&mut ps, [(Input(0), 1)]);
        live(&mut ps, &plans);
        assert!(assign(&mut ps, [(Input(0), 1)]).is_empty());
        assert_eq!(ps.state((Input(0), 1)), Some(State::Live));
    }

    #[test]
    fn revoke_drops_live_and_restoring_partitions() {
        let mut ps = Partitions::new();
        let a = assign(&mut ps, [(Input(0), 0), (Input(0), 1)]);
        live(&mut ps, &a[..1]);
        let dropped = ps.revoke([(Input(0), 0), (Input(0), 1)]);
        assert_eq!(dropped, vec![(Input(0), 0)], "only live ones had a task");
        // The restore of partition 1 finishing after its revocation is discarded.
        assert!(!ps.restored((Input(0), 1), a[1].epoch));
        assert_eq!(ps.state((Input(0), 1)), None);
        assert!(ps.ready());
    }

    #[test]
    fn only_the_epochs_of_partitions_still_restoring_are_waited_for() {
        let mut ps = Partitions::new();
        let first = assign(&mut ps, [(Input(0), 3), (Input(0), 4)]);
        ps.revoke([(Input(0), 3)]);
        let second = assign(&mut ps, [(Input(0), 3)]);
        let mut epochs: Vec<u64> = ps.restoring_epochs().collect();
        epochs.sort_unstable();
        assert_eq!(
            epochs,
            [first[1].epoch, second[0].epoch],
            "not the revoked one's"
        );
        live(&mut ps, &second);
        assert_eq!(ps.restoring_epochs().collect::<Vec<_>>(), [first[1].epoch]);
    }

    #[test]
    fn restore_in_progress_blocks_readiness_and_a_stale_result_is_ignored() {
        let mut ps = Partitions::new();
        let first = assign(&mut ps, [(Input(0), 3)]);
        // Revoked and assigned again while the first restore still runs.
        ps.revoke([(Input(0), 3)]);
        let second = assign(&mut ps, [(Input(0), 3)]);
        assert_ne!(first[0].epoch, second[0].epoch);
        assert!(!ps.restored((Input(0), 3), first[0].epoch), "stale epoch");
        assert!(!ps.ready());
        assert!(ps.restored((Input(0), 3), second[0].epoch));
        assert!(ps.ready());
    }

    #[test]
    fn lost_after_an_abort_restores_the_other_live_partitions() {
        let mut ps = Partitions::new();
        let a = assign(
            &mut ps,
            [(Input(0), 0), (Input(0), 1), (Surge, 1), (Input(0), 2)],
        );
        live(&mut ps, &a[..2]);
        // Partition 2 is still restoring when partition 0 is lost.
        let (dropped, plans) = ps.lost(Role::Input, [(Input(0), 0)], true);
        assert_eq!(dropped, vec![(Input(0), 0)]);
        assert_eq!(plans.len(), 1);
        assert_eq!(
            (plans[0].partition, plans[0].inputs.clone(), plans[0].surge),
            (1, vec![0], true)
        );
        // Partition 2's restore was not superseded: it wrote nothing that was aborted.
        assert!(ps.restored((Input(0), 2), a[2].epoch));
        // The old epoch of partition 1 no longer counts.
        assert!(!ps.restored((Input(0), 1), a[1].epoch));
        live(&mut ps, &plans);
        assert!(!ps.ready(), "lost: not ready until the group assigns again");
        assert!(ps.assign(Role::Input, []).is_empty());
        assert!(ps.ready());
        assert_eq!(ps.state((Input(0), 0)), None);
    }

    #[test]
    fn lost_without_an_abort_leaves_the_others_alone() {
        let mut ps = Partitions::new();
        let a = assign(&mut ps, [(Input(0), 0), (Input(0), 1)]);
        live(&mut ps, &a);
        let (dropped, plans) = ps.lost(Role::Input, [(Input(0), 1)], false);
        assert_eq!(dropped, vec![(Input(0), 1)]);
        assert!(plans.is_empty());
        assert_eq!(ps.state((Input(0), 0)), Some(State::Live));
        // Lost with nothing left: owning nothing is not ready before the next assignment.
        let (dropped, _) = ps.lost(Role::Input, [(Input(0), 0)], false);
        assert_eq!(dropped, vec![(Input(0), 0)]);
        assert!(!ps.ready());
        ps.assign(Role::Input, []);
        assert!(ps.ready());
    }

    #[test]
    fn a_failed_restore_is_retried_for_what_still_waits() {
        let mut ps = Partitions::new();
        let a = assign(&mut ps, [(Input(0), 4), (Input(1), 4), (Surge, 4)]);
        ps.revoke([(Input(1), 4)]);
        let retry = ps.restore_failed(4, a[0].epoch).expect("retry");
        assert_eq!((retry.inputs, retry.surge), (vec![0], true));
        assert!(retry.epoch > a[0].epoch);
        // A failure of a superseded request asks for nothing.
        assert_eq!(ps.restore_failed(4, a[0].epoch), None);
        assert_eq!(ps.restore_failed(9, 1), None);
    }

    #[test]
    fn reset_and_clear() {
        let mut ps = Partitions::new();
        let a = assign(&mut ps, [(Input(0), 0), (Surge, 0)]);
        live(&mut ps, &a);
        let r = ps.reset();
        assert_eq!((r.len(), r[0].surge), (1, true));
        assert_eq!(ps.restoring_partitions(), 1);
        ps.clear();
        assert_eq!(ps.restoring_partitions(), 0);
        assert!(!ps.ready(), "not joined after the clients are recreated");
    }
}
