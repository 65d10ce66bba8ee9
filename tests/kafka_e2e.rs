//! End to end through a real Apache Kafka broker: the worked examples E1–E8 (half proto3
//! JSON, half protobuf) give exactly the SLA events `slawatch replay` gives over the same
//! events, with exactly-once and at-least-once.
mod common;
mod kafka_rt;

use kafka_rt::*;
use slawatch::core::time::{Dur, Ts};
use slawatch::runtime::time_source::ManualClock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

fn examples_through_kafka(exactly_once: bool) {
    let names = Names::new(if exactly_once { "e2e-eos" } else { "e2e-alo" });
    let cfg = config(&names, "i0", exactly_once, "");
    let events = examples();
    let until = events
        .iter()
        .map(|e| e.occurred_at)
        .max()
        .unwrap()
        .saturating_add(Dur::from_secs(48 * 3600));
    let want = reference(&events, until);
    assert!(want.len() > 20, "replay gives {} outputs", want.len());

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let h = start(&cfg, clock.clone());
    wait_ready(&h);
    produce_events(&names.input, &events, 2);
    wait_for("all events consumed", WAIT, || {
        h.control.records_consumed.load(Ordering::Relaxed) >= events.len() as u64
    });
    // Now the wall clock reaches `until`: every caught-up partition fires what replay does.
    clock.set(clock_for_until(until));
    let r = reader(&output_topics(&names), "read_committed");
    let got = read_n(&r, want.len(), WAIT, Duration::from_secs(1));
    assert_same_outputs(&got, &want);
    h.stop().expect("graceful stop");
}

#[test]
fn examples_exactly_once_equal_replay() {
    examples_through_kafka(true);
}

#[test]
fn examples_at_least_once_equal_replay() {
    examples_through_kafka(false);
}

/// Surges (R26) are detected on the repartition topic's partitions, fed by every input
/// partition: with the input partitions' watermarks propagated to them, the live result is
/// replay's, including while a backlog of several input partitions is drained out of
/// event-time order.
#[test]
fn surges_across_partitions_equal_replay() {
    surges_through_kafka("e2e-surge", 1);
}

/// `[runtime] threads = 2`: two processing threads, each a group member with its own
/// clients, split the input and repartition partitions between them; the result is still
/// replay's, exactly once.
#[test]
fn two_processing_threads_split_the_partitions_and_equal_replay() {
    surges_through_kafka("e2e-threads", 2);
}

fn surges_through_kafka(name: &str, threads: usize) {
    let names = Names::new(name);
    let cfg = config(
        &names,
        "i0",
        true,
        &format!("[runtime]\nthreads = {threads}"),
    );
    let surge = (
        Dur::from_secs(70 * 60),
        Dur::from_secs(12 * 60),
        "globex",
        8.0,
    );
    let events = sorted(workload_with(
        t("01:00:00"),
        100,
        15.0,
        21,
        "S",
        vec![surge],
    ));
    let until = events
        .last()
        .unwrap()
        .occurred_at
        .saturating_add(Dur::from_secs(48 * 3600));
    let want = reference(&events, until);
    let surges = want
        .iter()
        .filter(|l| l.contains("\"surgeStarted\""))
        .count();
    assert!(surges >= 1, "the planted surge is in replay's output");

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let h = if threads == 1 {
        // A backlog: everything is produced before the processor starts.
        produce_events(&names.input_topic_created(), &events, 5);
        start(&cfg, clock.clone())
    } else {
        // The events are produced once every thread holds partitions of both groups (the
        // cooperative assignor moves partitions to a joining member in a second round), so
        // every thread processes some.
        let h = start(&cfg, clock.clone());
        for group in [names.group.clone(), format!("{}.surge", names.group)] {
            wait_for(
                &format!("{threads} members of {group} holding partitions"),
                WAIT,
                || members_holding_partitions(&group) == threads,
            );
        }
        wait_ready(&h);
        produce_events(&names.input, &events, 5);
        h
    };
    wait_ready(&h);
    wait_for("all events consumed", WAIT, || {
        h.control.records_consumed.load(Ordering::Relaxed) >= events.len() as u64
    });
    clock.set(clock_for_until(until));
    let r = reader(&output_topics(&names), "read_committed");
    let got = read_n(&r, want.len(), WAIT, Duration::from_secs(2));
    assert_same_outputs(&got, &want);
    h.stop().unwrap();
}
