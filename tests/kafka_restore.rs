//! State survives restarts and moves with partitions: a processor stopped mid-stream and a
//! new one restored from the state topic together publish exactly replay's outputs (no
//! duplicates, none missing), and so do two instances sharing the partitions through a
//! cooperative rebalance.
mod common;
mod kafka_rt;

use common::kafka::*;
use kafka_rt::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use slawatch::core::model::*;
use slawatch::core::time::{Dur, Ts};
use slawatch::runtime::time_source::ManualClock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn total_committed(names: &Names, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| committed_offset(&bootstrap(), &names.group, &names.input, p).unwrap_or(0))
        .sum()
}

#[test]
fn restart_mid_stream_restores_state_exactly_once() {
    let names = Names::new("restore");
    let cfg = config(&names, "i0", true, "");
    let events = sorted(workload(t("01:00:00"), 60, 20.0, 11, "R"));
    let n = events.len();
    let until = events
        .last()
        .unwrap()
        .occurred_at
        .saturating_add(Dur::from_secs(48 * 3600));
    let want = reference(&events, until);

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let a = start(&cfg, clock.clone());
    wait_ready(&a);
    let (first, second) = events.split_at(n / 2);
    produce_events(&names.input, first, 4);
    wait_for("first half consumed", WAIT, || {
        a.control.records_consumed.load(Ordering::Relaxed) >= first.len() as u64
    });
    a.stop().expect("graceful stop");
    let committed_after_a = total_committed(&names, 3);
    assert!(
        committed_after_a > 0,
        "the first instance committed progress"
    );

    let b = start(&cfg, clock.clone());
    wait_ready(&b);
    produce_events(&names.input, second, 4);
    let restores = b.control.restores.load(Ordering::Relaxed).max(1);
    eprintln!(
        "[restore] {} tickets restored in {} partition restores, {:.1} ms on average; {} of {} records were committed by the first instance",
        b.control.restored_tickets.load(Ordering::Relaxed),
        restores,
        b.control.restore_micros.load(Ordering::Relaxed) as f64 / restores as f64 / 1000.0,
        committed_after_a,
        n
    );
    wait_for("everything committed", WAIT, || {
        total_committed(&names, 3) >= n as i64
    });
    clock.set(clock_for_until(until));
    let r = reader(&output_topics(&names), "read_committed");
    let got = read_n(&r, want.len(), WAIT, Duration::from_secs(1));
    assert_same_outputs(&got, &want);
    b.stop().unwrap();
}

#[test]
fn two_instances_share_partitions_through_a_rebalance() {
    let names = Names::new("rebalance");
    let cfg_a = config(&names, "i0", true, "");
    let cfg_b = config(&names, "i1", true, "");
    let events = sorted(workload(t("01:00:00"), 60, 20.0, 12, "B"));
    let n = events.len();
    let until = events
        .last()
        .unwrap()
        .occurred_at
        .saturating_add(Dur::from_secs(48 * 3600));
    let want = reference(&events, until);

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let a = start(&cfg_a, clock.clone());
    wait_ready(&a);
    let (first, second) = events.split_at(n / 2);
    produce_events(&names.input, first, 3);
    wait_for("first half consumed", WAIT, || {
        a.control.records_consumed.load(Ordering::Relaxed) >= first.len() as u64 / 2
    });
    let b = start(&cfg_b, clock.clone());
    let started = Instant::now();
    let owned = |h: &slawatch::runtime::processor::ProcessorHandle| {
        (
            h.control.assigned_partitions.load(Ordering::Relaxed),
            h.control.assigned_surge_partitions.load(Ordering::Relaxed),
        )
    };
    wait_for(
        "both instances own input and surge partitions",
        WAIT,
        || {
            let (a_in, a_s) = owned(&a);
            let (b_in, b_s) = owned(&b);
            a.control.is_ready()
                && b.control.is_ready()
                && a_in + b_in == 3
                && a_in > 0
                && b_in > 0
                && a_s + b_s == 3
                && a_s > 0
                && b_s > 0
        },
    );
    eprintln!(
        "[rebalance] second instance ready after {:?}: A owns {:?}, B owns {:?} (input, surge) partitions",
        started.elapsed(),
        owned(&a),
        owned(&b)
    );
    produce_events(&names.input, second, 3);
    wait_for("everything committed", WAIT, || {
        total_committed(&names, 3) >= n as i64
    });
    clock.set(clock_for_until(until));
    let r = reader(&output_topics(&names), "read_committed");
    let got = read_n(&r, want.len(), WAIT, Duration::from_secs(1));
    assert_same_outputs(&got, &want);
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn rebuild_from_input_replaces_a_lost_state_topic_without_repeating_outputs() {
    let names = Names::new("rebuild");
    let cfg = config(&names, "i0", true, "");
    let events = sorted(workload(t("01:00:00"), 40, 20.0, 14, "W"));
    let n = events.len();
    let until = events
        .last()
        .unwrap()
        .occurred_at
        .saturating_add(Dur::from_secs(48 * 3600));
    let want = reference(&events, until);
    let (first, second) = events.split_at(n / 2);

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let a = start(&cfg, clock.clone());
    wait_ready(&a);
    produce_events(&names.input, first, 0);
    wait_for("first half committed", WAIT, || {
        total_committed(&names, 3) >= first.len() as i64
    });
    a.stop().unwrap();

    // The state topic is lost: point the replica at a new, empty one and rebuild from the
    // input. Outputs of the first half were published already and must not repeat.
    let mut lost = cfg.clone();
    lost.topics.state = format!("{}.state-new", names.prefix);
    let b = start_with(&lost, clock.clone(), true);
    wait_ready(&b);
    produce_events(&names.input, second, 0);
    wait_for("everything committed", WAIT, || {
        total_committed(&names, 3) >= n as i64
    });
    clock.set(clock_for_until(until));
    let r = reader(&output_topics(&names), "read_committed");
    let got = read_n(&r, want.len(), WAIT, Duration::from_secs(1));
    assert_same_outputs(&got, &want);
    b.stop().unwrap();

    // And the rebuilt state topic restores like any other.
    let c = start(&lost, clock.clone());
    wait_ready(&c);
    assert!(
        c.control.restored_tickets.load(Ordering::Relaxed) > 0,
        "the rebuild wrote ticket state"
    );
    c.stop().unwrap();
}

/// Restore at scale: a processor assigned partitions whose state topic holds many open
/// tickets becomes ready with every ticket restored. Prints the time to ready (the figure
/// itself is measured at 1 M by `cargo bench --bench kafka`, `SLAWATCH_BENCH_ONLY=restore`).
/// Size: `SLAWATCH_RESTORE_TICKETS` (default 100 000).
#[test]
fn many_open_tickets_are_restored_before_readiness() {
    let n: usize = std::env::var("SLAWATCH_RESTORE_TICKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let names = Names::new("restore-many");
    let cfg = config(&names, "i0", true, "");
    let origin = t("01:00:00");
    let events: Vec<Event> = (0..n)
        .map(|i| Event {
            event_id: format!("M{i}-1").into(),
            ticket_id: format!("M{i}").into(),
            occurred_at: origin.saturating_add(Dur::from_millis(i as i64)),
            tenant: "acme".into(),
            body: Body::Opened {
                channel: Channel::Email,
                category: Category::Inquiry,
                urgency: Urgency::General,
                tier: Tier::Standard,
                team: "".into(),
            },
        })
        .collect();
    names.input_topic_created();
    produce_events(&names.input, &events, 0);
    // An event an hour later on every partition moves each watermark past all the tickets'
    // openings (otherwise the last second of them would still wait in the pending buffer).
    let producer: BaseProducer = producer_config(&bootstrap()).create().unwrap();
    for p in 0..3 {
        let late = Event {
            event_id: format!("Z{p}-1").into(),
            ticket_id: format!("Z{p}").into(),
            occurred_at: origin.saturating_add(Dur::from_secs(3600 + n as i64 / 1000)),
            tenant: "acme".into(),
            body: Body::CustomerMessage,
        };
        let value = slawatch::codec::event_to_protobuf(&late);
        send(
            &producer,
            BaseRecord::to(&names.input)
                .partition(p)
                .key(late.ticket_id.as_bytes())
                .payload(value.as_slice()),
        );
    }
    producer.flush(TIMEOUT).unwrap();
    let n_records = n + 3;
    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let a = start(&cfg, clock.clone());
    wait_for("every ticket opened and committed", WAIT * 2, || {
        total_committed(&names, 3) >= n_records as i64
    });
    a.stop().expect("graceful stop");

    let started = Instant::now();
    let b = start(&cfg, clock);
    wait_for("readiness after the restore", WAIT * 2, || {
        assert!(
            !b.is_finished(),
            "processor stopped: {:?}",
            b.control.last_error()
        );
        b.control.is_ready() && b.control.assigned_partitions.load(Ordering::Relaxed) == 3
    });
    let took = started.elapsed();
    let restored = b.control.restored_tickets.load(Ordering::Relaxed);
    eprintln!(
        "[restore] {restored} open tickets restored, ready {:.2} s after start (start-up, group join and 3 partition restores)",
        took.as_secs_f64()
    );
    assert_eq!(
        restored, n as u64,
        "every open ticket restored before readiness (failure mode: state lost on restart)"
    );
    b.stop().unwrap();
}

/// Rule 11 across a restore: tenants acme and globex both have tickets "1"–"4" open (same
/// Kafka key, so the same partition, store and changelog) when the processor stops; a new
/// one restores them from the state topic, then each tenant's answers stop only its own
/// clocks. Were the changelog keyed by ticket id alone, one tenant's record of each id
/// would replace the other's: fewer than 8 tickets restored (3 when tried with the key's
/// tenant dropped), and the outputs of the lost tickets missing.
#[test]
fn rule11_two_tenants_share_ticket_ids_across_a_restore() {
    let names = Names::new("tenants-restore");
    let cfg = config(&names, "i0", true, "");
    let event = |tenant: &str, ticket: &str, n: u32, at: &str, body: Body| Event {
        event_id: format!("{tenant}-{ticket}-{n}").into(),
        ticket_id: ticket.into(),
        occurred_at: t(at),
        tenant: tenant.into(),
        body,
    };
    let chat = || Body::Opened {
        channel: Channel::Chat,
        category: Category::Inquiry,
        urgency: Urgency::General,
        tier: Tier::Standard,
        team: "".into(),
    };
    let answer = || Body::AgentMessage {
        kind: ReplyKind::Answer,
        audience: Audience::Customer,
    };
    // Given both tenants' chats "1"–"4" opened at 10:00 (first_response: 60 s), each with
    // a customer message at 10:00:02 (which moves the watermark past the openings, so the
    // tickets are held, and written to the state topic, before the stop),
    let mut before = Vec::new();
    for ticket in ["1", "2", "3", "4"] {
        for tenant in ["acme", "globex"] {
            before.push(event(tenant, ticket, 1, "10:00:00", chat()));
        }
    }
    for ticket in ["1", "2", "3", "4"] {
        for tenant in ["acme", "globex"] {
            before.push(event(tenant, ticket, 2, "10:00:02", Body::CustomerMessage));
        }
    }
    // and answers after the restart, at 10:00:20: acme answers "1" and "3", globex "2" and
    // "3"; nobody answers "4". Then one opening per partition an hour later moves every
    // watermark past the deadlines.
    let mut after = vec![
        event("acme", "1", 3, "10:00:20", answer()),
        event("globex", "2", 3, "10:00:20", answer()),
        event("acme", "3", 3, "10:00:20", answer()),
        event("globex", "3", 3, "10:00:20", answer()),
    ];
    let (t_end, sentinels) = sentinels(t("10:00:20"), 3);
    after.extend(sentinels.iter().map(|(_, e)| e.clone()));
    let all: Vec<Event> = before.iter().chain(&after).cloned().collect();
    let until = t_end.saturating_add(Dur::from_secs(48 * 3600));
    let want = reference(&all, until);

    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let a = start(&cfg, clock.clone());
    wait_ready(&a);
    produce_events(&names.input, &before, 2);
    // (Committed input offsets, not `records_consumed`: what the next processor restores
    // is what was committed, not what was read.)
    wait_for("openings consumed and committed", WAIT, || {
        total_committed(&names, 3) >= before.len() as i64
    });
    // When the processor stops and another restores from the state topic,
    a.stop().expect("graceful stop");
    let b = start(&cfg, clock.clone());
    wait_ready(&b);
    wait_for("every input partition assigned and restored", WAIT, || {
        b.control.is_ready()
            && b.control.assigned_partitions.load(Ordering::Relaxed) == 3
            && b.control.restoring_partitions.load(Ordering::Relaxed) == 0
    });
    // then all eight tickets are back, each tenant's apart,
    assert_eq!(
        b.control.restored_tickets.load(Ordering::Relaxed),
        8,
        "tickets restored (4 would mean one tenant's ticket replaced the other's)"
    );
    let producer: BaseProducer = producer_config(&bootstrap()).create().expect("producer");
    produce_with(&producer, &names.input, &after[..4], 0);
    produce_to_partitions(&producer, &names.input, &sentinels);
    producer.flush(TIMEOUT).expect("flush");
    wait_for("everything committed", WAIT, || {
        total_committed(&names, 3) >= all.len() as i64
    });
    clock.set(clock_for_until(until));
    let r = reader(&output_topics(&names), "read_committed");
    let got = read_n(&r, want.len(), WAIT, Duration::from_secs(1));
    // and the outputs are replay's, exactly once: each answer stopped only its tenant's
    // clock, so first_response breaches are globex "1", acme "2" and both "4"s, with
    // output ids that differ between the tenants' "4".
    assert_same_outputs(&got, &want);
    let mut breaches: Vec<(String, String, String)> = payloads(&got)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| {
            v["clock"] == "first_response" && v.get("breach").is_some() && v["tenant"] != "zeta"
        })
        .map(|v| {
            (
                v["tenant"].as_str().unwrap_or("").to_string(),
                v["ticketId"].as_str().unwrap().to_string(),
                v["eventId"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    breaches.sort();
    let who: Vec<(&str, &str)> = breaches
        .iter()
        .map(|(tenant, id, _)| (tenant.as_str(), id.as_str()))
        .collect();
    assert_eq!(
        who,
        vec![
            ("acme", "2"),
            ("acme", "4"),
            ("globex", "1"),
            ("globex", "4")
        ]
    );
    assert_ne!(breaches[1].2, breaches[3].2, "tenant-hashed output ids");
    b.stop().unwrap();
}

/// The state topics a processor creates carry the settings that keep a restore to about
/// one record per open ticket (src/runtime/topics.rs, docs/operations.md): a broker's
/// defaults (1 GiB segments, cleaning at half dirty, tombstones kept a day) would have a
/// restore read every update of the last segment and a day of freed tickets.
#[test]
fn created_state_topics_are_compacted_with_small_segments_and_short_lived_tombstones() {
    use slawatch::runtime::topics::{ensure_topics, Topics, STATE_TOPIC_CONFIG};
    let names = Names::new("state-topic-config");
    let cfg = config(&names, "i0", true, "");
    let topics = Topics::new(&cfg, false);
    let report = ensure_topics(&cfg, &topics, true).expect("topics created");
    assert!(report.created.contains(&topics.state), "{report:?}");
    for topic in [&topics.state, &topics.surge_state] {
        let got = topic_config(&bootstrap(), topic);
        for &(key, want) in STATE_TOPIC_CONFIG {
            let value = got
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.clone());
            assert_eq!(value.as_deref(), Some(want), "{topic}: {key}");
        }
    }
}

/// Releasing what is held (`changelog::held`: a restore found the group's committed offsets
/// or a state partition held, and the processor runs, on each of its producers, a
/// transaction that writes a tombstone to each held state partition, sends the stable
/// committed offsets and is aborted) on a real broker: no committed offset changes,
/// nothing stays pending (a require-stable fetch answers within a bound shorter than the
/// transaction timeout), the tombstone reached the partition but only read_uncommitted
/// sees it, the partition is decided (last stable offset = high watermark), and the
/// producer commits normally afterwards.
#[test]
fn releasing_what_is_held_changes_no_committed_offset_and_leaves_nothing_undecided() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::Message;
    use slawatch::runtime::changelog::keys::RELEASE_KEY;
    use slawatch::runtime::kafka::recovery::Trouble;
    use slawatch::runtime::kafka::txn::{new_producer, ProducerCtx, Txn};
    let bs = bootstrap();
    let topic = unique_name("held-in");
    let group = unique_name("held-g");
    create_topic(&bs, &topic, 1, &[]);
    let ctx = ProducerCtx::new(Default::default(), Arc::new(Trouble::new()));
    // transaction.timeout.ms 30 s: a transaction left open would hold the fetch below.
    let settings = transactional_producer_config(&bs, &unique_name("held-txn"));
    let producer = new_producer(settings, true, ctx, TIMEOUT, &topic).expect("producer");
    let mut txn = Txn::new(producer, true, TIMEOUT);
    let consumer: BaseConsumer = consumer_config(&bs, &group).create().expect("consumer");
    let gm = consumer.group_metadata().expect("group metadata");
    let offsets = |o| {
        let mut t = TopicPartitionList::new();
        t.add_partition_offset(&topic, 0, Offset::Offset(o))
            .unwrap();
        t
    };
    txn.commit(&[(&offsets(10), &gm)])
        .expect("commit offset 10");
    assert_eq!(committed_offset(&bs, &group, &topic, 0), Some(10));

    let state = unique_name("held-state");
    create_topic(&bs, &state, 2, &[]);
    txn.discard_orphans(&[(&offsets(10), &gm)], &[(&state, 1)], RELEASE_KEY)
        .expect("release: a tombstone to the state partition, the offsets, abort");
    assert!(!txn.is_open());
    // The coordinator answers the abort once it is logged and writes the partitions'
    // markers after that: wait (bounded) for the marker, then check the partition's end.
    let uncommitted: BaseConsumer = consumer_config(&bs, &unique_name("held-ru"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let stable_reader: BaseConsumer = consumer_config(&bs, &unique_name("held-lso"))
        .create()
        .expect("consumer");
    let marked_until = Instant::now() + Duration::from_secs(10);
    let (end, stable) = loop {
        let end = uncommitted
            .fetch_watermarks(&state, 1, TIMEOUT)
            .expect("high watermark")
            .1;
        let stable = stable_reader
            .fetch_watermarks(&state, 1, TIMEOUT)
            .expect("last stable offset")
            .1;
        if (end, stable) == (2, 2) || Instant::now() > marked_until {
            break (end, stable);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        end, 2,
        "the tombstone and the abort marker are in the partition"
    );
    assert_eq!(
        stable, end,
        "decided within 10 s: a read_committed reader's end is the high watermark"
    );
    uncommitted.subscribe(&[&state]).expect("subscribe");
    let seen = collect_messages(&uncommitted, 1, TIMEOUT);
    assert_eq!(
        (seen[0].partition(), seen[0].key(), seen[0].payload()),
        (1, Some(RELEASE_KEY), None),
        "read_uncommitted sees the release's tombstone"
    );
    let committed_reader = read_committed_consumer(&bs, &unique_name("held-rc"), &[&state]);
    let visible = try_collect_messages(&committed_reader, 1, Duration::from_secs(3));
    assert!(
        visible.is_empty(),
        "read_committed sees nothing of the release"
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let stable = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("a require-stable fetch answers: nothing pending");
    assert_eq!(
        stable.find_partition(&topic, 0).map(|e| e.offset()),
        Some(Offset::Offset(10)),
        "the committed offset is unchanged"
    );

    txn.commit(&[(&offsets(12), &gm)])
        .expect("commit after the release");
    assert_eq!(committed_offset(&bs, &group, &topic, 0), Some(12));
}

/// Another producer's transaction, left open, with a tombstone of a ticket nobody has in
/// each of `partitions` of the state topic.
fn open_transaction_in_state(
    names: &Names,
    state_topic: &str,
    partitions: std::ops::Range<i32>,
) -> BaseProducer {
    use slawatch::runtime::changelog::keys::ticket_key;
    let key = ticket_key(&names.input, "", "nobody");
    open_tombstones(state_topic, &key, partitions, None)
}

/// A transactional producer of the test's own with a transaction left open that holds a
/// tombstone of `key` in each of `partitions` of `state_topic`, each with `covers` as its
/// `slawatch-covers` header if given.
fn open_tombstones(
    state_topic: &str,
    key: &[u8],
    partitions: std::ops::Range<i32>,
    covers: Option<&str>,
) -> BaseProducer {
    use rdkafka::message::{Header, OwnedHeaders};
    use slawatch::runtime::changelog::write::COVERS_HEADER;
    let txn: BaseProducer = transactional_producer_config(&bootstrap(), &unique_name("undecided"))
        .create()
        .expect("producer");
    txn.init_transactions(TIMEOUT).expect("init_transactions");
    txn.begin_transaction().expect("begin");
    for p in partitions {
        let mut rec = BaseRecord::<[u8], [u8]>::to(state_topic)
            .key(key)
            .partition(p);
        if let Some(c) = covers {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: COVERS_HEADER,
                value: Some(c.as_bytes()),
            }));
        }
        txn.send(rec).map_err(|(e, _)| e).expect("send");
    }
    txn.flush(TIMEOUT).expect("flush");
    txn
}

/// Waits (20 s at most) until a release's tombstone is in each of `state_topic`'s three
/// partitions (read uncommitted), the processor not ready meanwhile; then checks, a second
/// later, that the release did not end another producer's transaction (still not ready).
fn wait_for_releases_while_held(
    h: &slawatch::runtime::processor::ProcessorHandle,
    state_topic: &str,
) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    use slawatch::runtime::changelog::keys::RELEASE_KEY;
    let uncommitted: BaseConsumer = consumer_config(&bootstrap(), &unique_name("held-ru"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    uncommitted.subscribe(&[state_topic]).expect("subscribe");
    let mut released = std::collections::BTreeSet::new();
    let open_until = Instant::now() + Duration::from_secs(20);
    while released.len() < 3 {
        assert!(
            Instant::now() < open_until,
            "no release reached every held state partition within 20 s (got {released:?})"
        );
        assert!(
            !h.control.is_ready(),
            "ready while a transaction in the state partitions is undecided"
        );
        assert!(!h.is_finished(), "{:?}", h.control.last_error());
        for m in try_collect_messages(&uncommitted, 100, Duration::from_millis(200)) {
            if m.key() == Some(RELEASE_KEY) && m.payload().is_none() {
                released.insert(m.partition());
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !h.control.is_ready(),
        "the release ended another producer's transaction"
    );
}

/// A restore reads a state partition only once every transaction in it is decided: the
/// committed offsets it starts from can be stable before the markers of the transaction that
/// committed them reach the state partition (after a broker restart), and reading up to the
/// last stable offset then would miss that transaction's state. Here another producer holds
/// a transaction open in every state partition (a tombstone of a ticket nobody has): the
/// processor is not ready while it is open, and is once it commits. Held for seconds, the
/// partitions get the processor's release (a tombstone in a transaction it aborts, which
/// would end a transaction its own producers left open there): it reaches every partition,
/// ends nothing of another producer's, and no reader of committed data ever sees it.
#[test]
fn restore_waits_for_an_undecided_transaction_in_the_state_partition() {
    use rdkafka::Message;
    use slawatch::runtime::changelog::keys::RELEASE_KEY;
    use slawatch::runtime::topics::{ensure_topics, Topics};
    let names = Names::new("restore-undecided");
    let cfg = config(&names, "i0", true, "");
    let topics = Topics::new(&cfg, false);
    ensure_topics(&cfg, &topics, true).expect("topics created");
    let txn = open_transaction_in_state(&names, &topics.state, 0..3);

    let h = start(&cfg, Arc::new(ManualClock::new(Ts::from_secs(0))));
    wait_for_releases_while_held(&h, &topics.state);
    txn.commit_transaction(TIMEOUT).expect("commit");
    wait_ready(&h);
    h.stop().expect("graceful stop");
    let committed =
        read_committed_consumer(&bootstrap(), &unique_name("undecided-rc"), &[&topics.state]);
    let visible = try_collect_messages(&committed, 100, Duration::from_secs(3));
    let nobody = slawatch::runtime::changelog::keys::ticket_key(&names.input, "", "nobody");
    assert_eq!(
        visible
            .iter()
            .filter(|m| m.key() == Some(nobody.as_slice()))
            .count(),
        3,
        "the other producer's three tombstones, committed"
    );
    assert!(
        visible.iter().all(|m| m.key() != Some(RELEASE_KEY)),
        "read_committed sees nothing of the release"
    );
}

/// A held state partition whose undecided records include a state write covering offsets
/// the group has committed (the broker can mark a transaction complete without writing its
/// markers to every partition when it restarts mid-commit: `changelog::held`) is released
/// by a committed transaction, not an aborted one: the release's tombstone reaches every
/// held partition committed (a read_committed reader sees it). Another producer's records
/// stay undecided (a marker of ours ends only our own), and the processor is ready once
/// that producer ends them.
#[test]
fn a_hold_covering_committed_offsets_is_released_by_a_commit() {
    use rdkafka::Message;
    use slawatch::runtime::changelog::keys::RELEASE_KEY;
    use slawatch::runtime::topics::{ensure_topics, Topics};
    let names = Names::new("restore-committed-hold");
    let cfg = config(&names, "i0", true, "");
    let input = names.input_topic_created();
    let topics = Topics::new(&cfg, false);
    ensure_topics(&cfg, &topics, true).expect("topics created");
    // The group has committed offset 0 of every input partition; another producer's
    // transaction, left open, holds a partition record (a tombstone) covering offset 0 in
    // every state partition.
    let txn = partition_records_covering(&input, &topics, 0, None);

    let h = start(&cfg, Arc::new(ManualClock::new(Ts::from_secs(0))));
    // While held, the releases are seen uncommitted (the open transaction before them holds
    // a read_committed reader).
    wait_for_releases_while_held(&h, &topics.state);
    txn.abort_transaction(TIMEOUT).expect("abort");
    wait_ready(&h);
    h.stop().expect("graceful stop");
    // Committed: a read_committed reader sees the release in every partition.
    let committed =
        read_committed_consumer(&bootstrap(), &unique_name("covers-rc"), &[&topics.state]);
    let seen: std::collections::BTreeSet<i32> =
        try_collect_messages(&committed, 100, Duration::from_secs(3))
            .iter()
            .filter(|m| m.key() == Some(RELEASE_KEY))
            .map(|m| m.partition())
            .collect();
    assert_eq!(
        seen,
        (0..3).collect(),
        "the releases were committed, not aborted"
    );
}

/// With one restore slot, partitions whose state is held by an undecided transaction give
/// the slot back while they wait: the clean partition restores and processes its input
/// meanwhile (it was spawned last, so without the release it would wait for the others).
#[test]
fn a_restore_waiting_on_an_undecided_transaction_frees_its_slot_for_another_partition() {
    use slawatch::runtime::topics::{ensure_topics, Topics};
    let names = Names::new("restore-slot");
    let cfg = config(&names, "i0", true, "[runtime]\nparallel_restores = 1");
    assert_eq!(cfg.runtime.parallel_restores(), 1);
    let input = names.input_topic_created();
    let topics = Topics::new(&cfg, false);
    ensure_topics(&cfg, &topics, true).expect("topics created");
    // One event in the clean partition 2.
    let producer: BaseProducer = producer_config(&bootstrap()).create().expect("producer");
    let (_, events) = sentinels(Ts::from_secs(1_800_000_000), 3);
    produce_to_partitions(&producer, &input, &events[2..]);
    producer.flush(TIMEOUT).expect("flush");
    // Partitions 0 and 1 of the state topic held by an open transaction.
    let txn = open_transaction_in_state(&names, &topics.state, 0..2);

    let h = start(&cfg, Arc::new(ManualClock::new(Ts::from_secs(0))));
    let open_until = Instant::now() + Duration::from_secs(6);
    while h.control.records_consumed.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < open_until,
            "partition 2 was not restored and consumed while partitions 0 and 1 waited (one slot)"
        );
        assert!(
            !h.control.is_ready(),
            "ready while partitions 0 and 1 are held"
        );
        assert!(!h.is_finished(), "{:?}", h.control.last_error());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !h.control.is_ready(),
        "ready while partitions 0 and 1 are held"
    );
    txn.commit_transaction(TIMEOUT).expect("commit");
    wait_ready(&h);
    h.stop().expect("graceful stop");
}

/// The group's committed offsets of `topic` partitions 0..3 as they stand, pending commits
/// left out (read_uncommitted: no require-stable wait).
fn stable_committed(group: &str, topic: &str) -> Vec<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let c: BaseConsumer = consumer_config(&bootstrap(), group)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    (0..3)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// Commits offset 0 of the group for every input partition, then leaves a transaction open
/// (a producer of the test's own) that holds a partition record (a tombstone) in every state
/// partition, its `slawatch-covers` header naming input offset `offset` and `writer`.
fn partition_records_covering(
    input: &str,
    topics: &slawatch::runtime::topics::Topics,
    offset: i64,
    writer: Option<&str>,
) -> BaseProducer {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use slawatch::runtime::changelog::keys::partition_key;
    use slawatch::runtime::changelog::write::covers_value;
    let group: BaseConsumer = consumer_config(&bootstrap(), &topics.group_id)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(input, p, Offset::Offset(0))
            .unwrap();
    }
    group
        .commit(&tpl, CommitMode::Sync)
        .expect("commit offsets");
    let covers = covers_value(input, offset, writer);
    open_tombstones(&topics.state, &partition_key(input), 0..3, Some(&covers))
}

/// A transaction that no partition got a marker of (the broker skipped them all when it
/// restarted mid-commit): the group's offsets held by its pending offset commit (1 of each
/// input partition, holding one event), every state partition by a partition record
/// covering them, written (by its `slawatch-covers` header) by `writer`. Left open by a
/// producer of the test's own, as the orphan is by ours; the processor's restores find
/// offsets and state held.
fn orphan_holding_offsets_and_state(
    input: &str,
    topics: &slawatch::runtime::topics::Topics,
    writer: &str,
) -> BaseProducer {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let producer: BaseProducer = producer_config(&bootstrap()).create().expect("producer");
    let (_, events) = sentinels(Ts::from_secs(1_800_000_000), 3);
    produce_to_partitions(&producer, input, &events);
    producer.flush(TIMEOUT).expect("flush");
    let txn = partition_records_covering(input, topics, 1, Some(writer));
    let mut offsets = TopicPartitionList::new();
    for p in 0..3 {
        offsets
            .add_partition_offset(input, p, Offset::Offset(1))
            .unwrap();
    }
    let group: BaseConsumer = consumer_config(&bootstrap(), &topics.group_id)
        .create()
        .expect("consumer");
    let gm = group.group_metadata().expect("group metadata");
    txn.send_offsets_to_transaction(&offsets, &gm, TIMEOUT)
        .expect("pending offsets");
    txn
}

/// A transaction of one of our own producers that no partition shows the fate of is rolled
/// forward (see `changelog::held`): the processor's release commits the offsets its state
/// records cover (1 in each partition, beyond the stable 0) together with a tombstone to
/// each held state partition, in one committed transaction of the producer that wrote
/// them. Its input is then not processed again, and the offsets stay when the open
/// transaction standing in for the orphan is aborted.
#[test]
fn a_transaction_of_ours_holding_offsets_and_state_is_rolled_forward() {
    use slawatch::runtime::topics::{ensure_topics, Topics};
    let names = Names::new("restore-roll-forward");
    let cfg = config(&names, "i0", true, "");
    let input = names.input_topic_created();
    let topics = Topics::new(&cfg, false);
    ensure_topics(&cfg, &topics, true).expect("topics created");
    let ours = topics.transactional_ids[0].clone();
    let txn = orphan_holding_offsets_and_state(&input, &topics, &ours);
    assert_eq!(stable_committed(&topics.group_id, &input), [Some(0); 3]);

    let h = start(&cfg, Arc::new(ManualClock::new(Ts::from_secs(0))));
    wait_for(
        "the offsets the held state covers committed by the release",
        Duration::from_secs(30),
        || {
            assert!(!h.is_finished(), "{:?}", h.control.last_error());
            stable_committed(&topics.group_id, &input) == [Some(1); 3]
        },
    );
    txn.abort_transaction(TIMEOUT).expect("abort");
    wait_ready(&h);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        h.control.records_consumed.load(Ordering::Relaxed),
        0,
        "the input the rolled-forward state covers is not processed again"
    );
    h.stop().expect("graceful stop");
    assert_eq!(
        stable_committed(&topics.group_id, &input),
        [Some(1); 3],
        "committed, not released by an abort"
    );
}

/// The same hold by a transaction another process's producer wrote is not rolled forward
/// (that transaction may yet be aborted, and committing the offsets its state covers would
/// lose its input): the offsets are released by an abort, unchanged, and the input is
/// processed once the other producer aborts.
#[test]
fn a_hold_by_another_processs_transaction_is_not_rolled_forward() {
    use slawatch::runtime::topics::{ensure_topics, Topics};
    let names = Names::new("restore-no-roll-forward");
    let cfg = config(&names, "i0", true, "");
    let input = names.input_topic_created();
    let topics = Topics::new(&cfg, false);
    ensure_topics(&cfg, &topics, true).expect("topics created");
    let txn = orphan_holding_offsets_and_state(&input, &topics, "slawatch-elsewhere");

    let h = start(&cfg, Arc::new(ManualClock::new(Ts::from_secs(0))));
    wait_for_releases_while_held(&h, &topics.state);
    assert_eq!(
        stable_committed(&topics.group_id, &input),
        [Some(0); 3],
        "released by an abort: the committed offsets are unchanged"
    );
    txn.abort_transaction(TIMEOUT).expect("abort");
    wait_ready(&h);
    wait_for("the input processed", Duration::from_secs(20), || {
        h.control.records_consumed.load(Ordering::Relaxed) == 3
    });
    h.stop().expect("graceful stop");
}
