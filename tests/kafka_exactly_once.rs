//! Exactly-once across a crash: the real `slawatch run` binary is killed with SIGKILL while
//! it is consuming and committing, a new process with the same instance id (and so the same
//! transactional id) takes over, and a read_committed reader then sees exactly replay's SLA
//! events — none missing, none twice — although the killed process had written outputs of
//! a transaction that never committed. Then SIGHUP reloads the policy and SIGTERM stops the
//! second process gracefully.
mod common;
mod kafka_rt;

use common::kafka::*;
use kafka_rt::*;
use rdkafka::producer::BaseProducer;
use rdkafka::producer::Producer as _;
use slawatch::core::time::Dur;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sigkill_mid_transaction_loses_nothing_and_duplicates_nothing() {
    let names = Names::new("eos-kill");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("slawatch.toml");
    let log = dir.path().join("slawatch.log");
    // Event time only (no wall clock), so the result is comparable with replay.
    std::fs::write(
        &config,
        config_text(&names, "k0", true, "wall_clock_watermark = false"),
    )
    .unwrap();
    create_topic(&bootstrap(), &names.input, 3, &[]);

    let events = sorted(workload(t("01:00:00"), 90, 40.0, 13, "K"));
    let last = events.last().unwrap().occurred_at;
    // One sentinel `opened` per partition, an hour later, moves every partition's
    // watermark to the same instant (sub-second, so no timer is due exactly there).
    let (t_end, sentinels) = sentinels(last, 3);
    let mut all = events.clone();
    all.extend(sentinels.iter().map(|(_, e)| e.clone()));
    let want = reference(&all, t_end.saturating_sub(Dur::from_secs(1)));
    eprintln!(
        "[eos] {} events, replay gives {} SLA events",
        all.len(),
        want.len()
    );

    let split = events.len() * 2 / 5;
    produce_events(&names.input, &events[..split], 3);
    let mut first = spawn_run(&config, &log, &[]);
    let started = Instant::now();
    wait_for("the first process to commit", WAIT, || {
        assert!(
            first.try_wait().unwrap().is_none(),
            "slawatch exited early; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        progress_at(&bootstrap(), &names, 3).0 > 0
    });
    // Keep the input flowing while the process is killed, so it dies with a transaction
    // open (outputs written, not committed).
    let rest = events[split..].to_vec();
    let input = names.input.clone();
    let producer = std::thread::spawn(move || {
        let p: BaseProducer = producer_config(&bootstrap()).create().unwrap();
        for chunk in rest.chunks(40) {
            produce_with(&p, &input, chunk, 3);
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(10));
        }
        p.flush(TIMEOUT).unwrap();
    });
    std::thread::sleep(Duration::from_millis(1000));
    first.kill().expect("SIGKILL");
    first.wait().unwrap();
    let killed_at = progress_at(&bootstrap(), &names, 3);
    eprintln!(
        "[eos] killed after {:?}: {} of {} input records committed",
        started.elapsed(),
        killed_at.0,
        killed_at.1
    );
    producer.join().unwrap();
    let p: BaseProducer = producer_config(&bootstrap()).create().unwrap();
    produce_to_partitions(&p, &names.input, &sentinels);
    p.flush(TIMEOUT).unwrap();

    let mut second = spawn_run(&config, &log, &[]);
    let restarted = Instant::now();
    wait_for(
        "the second process to commit everything",
        Duration::from_secs(90),
        || {
            assert!(
                second.try_wait().unwrap().is_none(),
                "slawatch exited; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            let (c, e) = progress_at(&bootstrap(), &names, 3);
            c == e && e == all.len() as i64
        },
    );
    eprintln!(
        "[eos] second process caught up {:?} after its start",
        restarted.elapsed()
    );

    let committed = read_n(
        &reader(&output_topics(&names), "read_committed"),
        want.len(),
        WAIT,
        Duration::from_secs(2),
    );
    let uncommitted = read_n(
        &reader(&output_topics(&names), "read_uncommitted"),
        want.len(),
        WAIT,
        Duration::from_secs(2),
    );
    eprintln!(
        "[eos] read_committed sees {} SLA events, read_uncommitted {} (the difference is the killed transaction's, aborted)",
        committed.len(),
        uncommitted.len()
    );
    assert_same_outputs(&committed, &want);

    // SIGHUP reloads the (valid) policy file without stopping anything.
    assert!(Command::new("kill")
        .args(["-HUP", &second.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_for("the reload to be logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("policy reloaded")
    });
    assert!(
        second.try_wait().unwrap().is_none(),
        "SIGHUP must not stop slawatch"
    );

    // Graceful stop: SIGTERM → commit, leave, exit 0 within the shutdown bound.
    let stop = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    loop {
        if let Some(status) = second.try_wait().unwrap() {
            assert!(
                status.success(),
                "exit status {status}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            break;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(15),
            "SIGTERM did not stop slawatch within 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("[eos] SIGTERM → exit 0 in {:?}", stop.elapsed());
    // The last line says what the stop drained and that it is committed.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_else(|| panic!("no shutdown summary in the log:\n{text}"));
    assert!(
        last.contains("everything consumed is committed") && last.contains(" records, produced "),
        "{last}"
    );
    let consumed: u64 = last
        .split("consumed ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no record count in {last}"));
    assert!(consumed > 0, "the second process consumed records: {last}");
}
