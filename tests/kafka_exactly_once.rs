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
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer as _;
use rdkafka::producer::{BaseProducer, BaseRecord};
use slawatch::codec;
use slawatch::core::model::*;
use slawatch::core::time::Dur;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn slawatch run")
}

/// (committed, end) offsets summed over the input's partitions.
fn progress(names: &Names, partitions: i32) -> (i64, i64) {
    let c: BaseConsumer = consumer_config(&bootstrap(), &unique_name("probe"))
        .create()
        .unwrap();
    let mut committed = 0;
    let mut end = 0;
    for p in 0..partitions {
        end += c.fetch_watermarks(&names.input, p, TIMEOUT).unwrap().1;
        committed += committed_offset(&bootstrap(), &names.group, &names.input, p).unwrap_or(0);
    }
    (committed, end)
}

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
    let t_end = last
        .saturating_add(Dur::from_secs(3600))
        .saturating_add(Dur(123_456_789));
    let sentinels: Vec<(i32, Event)> = (0..3)
        .map(|p| {
            (
                p,
                Event {
                    event_id: format!("Z{p}-1").into(),
                    ticket_id: format!("Z{p}").into(),
                    occurred_at: t_end,
                    tenant: "zeta".into(),
                    body: Body::Opened {
                        channel: Channel::Email,
                        category: Category::Inquiry,
                        urgency: Urgency::General,
                        tier: Tier::Standard,
                        team: "".into(),
                    },
                },
            )
        })
        .collect();
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
    let mut first = spawn(&config, &log);
    let started = Instant::now();
    wait_for("the first process to commit", WAIT, || {
        assert!(
            first.try_wait().unwrap().is_none(),
            "slawatch exited early; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        progress(&names, 3).0 > 0
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
    let killed_at = progress(&names, 3);
    eprintln!(
        "[eos] killed after {:?}: {} of {} input records committed",
        started.elapsed(),
        killed_at.0,
        killed_at.1
    );
    producer.join().unwrap();
    let p: BaseProducer = producer_config(&bootstrap()).create().unwrap();
    for (partition, ev) in &sentinels {
        let v = codec::event_to_protobuf(ev);
        send(
            &p,
            BaseRecord::to(&names.input)
                .partition(*partition)
                .key(ev.ticket_id.as_bytes())
                .payload(v.as_slice()),
        );
    }
    p.flush(TIMEOUT).unwrap();

    let mut second = spawn(&config, &log);
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
            let (c, e) = progress(&names, 3);
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
}
