//! Proves the Kafka test harness (tests/common/kafka.rs) and the exactly-once building
//! blocks slawatch relies on, against a real Apache Kafka broker: a plain round trip,
//! transactional commit/abort under read_committed, and consumer offsets committed
//! through `send_offsets_to_transaction`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::kafka::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn round_trip_through_a_created_topic() {
    let bs = bootstrap();
    let topic = unique_name("harness-roundtrip");
    create_topic(
        &bs,
        &topic,
        3,
        &[("retention.ms", "3600000"), ("cleanup.policy", "delete")],
    );

    let config = topic_config(&bs, &topic);
    let get = |k: &str| {
        config
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(get("retention.ms").as_deref(), Some("3600000"));

    let records: Vec<(String, String)> = (0..30)
        .map(|i| (format!("k{}", i % 7), format!("v{i}")))
        .collect();
    produce(&bs, &topic, &records);

    let consumer = read_committed_consumer(&bs, &unique_name("harness-roundtrip-g"), &[&topic]);
    let got = collect_messages(&consumer, records.len(), WAIT);
    let got: BTreeSet<(String, String)> =
        got.iter().map(|m| (key_str(m), payload_str(m))).collect();
    let want: BTreeSet<(String, String)> = records.into_iter().collect();
    assert_eq!(got, want);
    // Nothing extra.
    assert!(try_collect_messages(&consumer, 1, Duration::from_millis(500)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_committed_transactions_only() {
    let bs = bootstrap();
    let topic = unique_name("harness-txn");
    create_topic(&bs, &topic, 1, &[]);

    let producer: FutureProducer = transactional_producer(&bs, &unique_name("harness-txn-id"));
    async fn send(p: &FutureProducer, topic: &str, payload: String) {
        p.send(
            FutureRecord::to(topic).key("k").payload(&payload),
            Duration::from_secs(0),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivery");
    }

    // Committed batch.
    producer.begin_transaction().unwrap();
    for i in 0..5 {
        send(&producer, &topic, format!("committed-{i}")).await;
    }
    producer.commit_transaction(WAIT).unwrap();

    // Aborted batch: written to the log (delivered), then aborted.
    producer.begin_transaction().unwrap();
    for i in 0..5 {
        send(&producer, &topic, format!("aborted-{i}")).await;
    }
    producer.abort_transaction(WAIT).unwrap();

    // A committed end marker: once a reader sees it, it has passed the aborted batch.
    producer.begin_transaction().unwrap();
    send(&producer, &topic, "end".to_string()).await;
    producer.commit_transaction(WAIT).unwrap();

    let bs2 = bs.clone();
    let topic2 = topic.clone();
    let (committed, uncommitted) = tokio::task::spawn_blocking(move || {
        let reader = read_committed_consumer(&bs2, &unique_name("harness-txn-rc"), &[&topic2]);
        let committed: Vec<String> = collect_messages(&reader, 6, WAIT)
            .iter()
            .map(payload_str)
            .collect();
        let extra = try_collect_messages(&reader, 1, Duration::from_millis(500));

        // The aborted records really are in the log: read_uncommitted shows them.
        let uncommitted_reader: BaseConsumer =
            consumer_config(&bs2, &unique_name("harness-txn-ru"))
                .set("isolation.level", "read_uncommitted")
                .create()
                .unwrap();
        uncommitted_reader.subscribe(&[&topic2]).unwrap();
        let uncommitted: Vec<String> = collect_messages(&uncommitted_reader, 11, WAIT)
            .iter()
            .map(payload_str)
            .collect();
        assert!(
            extra.is_empty(),
            "read_committed saw more: {:?}",
            extra.iter().map(payload_str).collect::<Vec<_>>()
        );
        (committed, uncommitted)
    })
    .await
    .unwrap();

    let mut want: Vec<String> = (0..5).map(|i| format!("committed-{i}")).collect();
    want.push("end".into());
    assert_eq!(committed, want);
    assert_eq!(
        uncommitted
            .iter()
            .filter(|p| p.starts_with("aborted-"))
            .count(),
        5,
        "{uncommitted:?}"
    );
}

#[test]
fn offsets_sent_to_a_transaction_are_committed_with_it() {
    let bs = bootstrap();
    let input = unique_name("harness-eos-in");
    let output = unique_name("harness-eos-out");
    let group = unique_name("harness-eos-g");
    create_topic(&bs, &input, 1, &[]);
    create_topic(&bs, &output, 1, &[]);
    let records: Vec<(String, String)> = (0..10)
        .map(|i| ("k".to_string(), format!("in-{i}")))
        .collect();
    produce(&bs, &input, &records);

    let producer: BaseProducer = transactional_producer(&bs, &unique_name("harness-eos-txn"));
    let offsets_at = |next: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&input, 0, Offset::Offset(next))
            .unwrap();
        tpl
    };

    {
        let consumer = read_committed_consumer(&bs, &group, &[&input]);
        let first = collect_messages(&consumer, 4, WAIT);
        assert_eq!(
            first.iter().map(|m| m.offset()).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        let cgm = consumer.group_metadata().expect("group metadata");

        // Process 0..=3 and commit outputs + input offset 4 atomically.
        producer.begin_transaction().unwrap();
        for m in &first {
            producer
                .send(
                    BaseRecord::to(&output)
                        .key("k")
                        .payload(&format!("out-{}", payload_str(m))),
                )
                .unwrap();
        }
        producer
            .send_offsets_to_transaction(&offsets_at(4), &cgm, WAIT)
            .unwrap();
        producer.commit_transaction(WAIT).unwrap();
        assert_eq!(committed_offset(&bs, &group, &input, 0), Some(4));

        // Process 4..=7 but abort: neither the outputs nor offset 8 may stick.
        let second = collect_messages(&consumer, 4, WAIT);
        assert_eq!(
            second.iter().map(|m| m.offset()).collect::<Vec<_>>(),
            vec![4, 5, 6, 7]
        );
        producer.begin_transaction().unwrap();
        for m in &second {
            producer
                .send(
                    BaseRecord::to(&output)
                        .key("k")
                        .payload(&format!("out-{}", payload_str(m))),
                )
                .unwrap();
        }
        producer
            .send_offsets_to_transaction(&offsets_at(8), &cgm, WAIT)
            .unwrap();
        producer.flush(WAIT).unwrap();
        producer.abort_transaction(WAIT).unwrap();
        assert_eq!(committed_offset(&bs, &group, &input, 0), Some(4));
        // Dropping the consumer closes it and leaves the group (auto-commit is off).
    }

    // A new member of the group resumes after the committed offsets: at 4, not 0 or 8.
    let resumed = read_committed_consumer(&bs, &group, &[&input]);
    let next = collect_messages(&resumed, 1, WAIT);
    assert_eq!(next[0].offset(), 4);
    assert_eq!(payload_str(&next[0]), "in-4");

    // Only the committed transaction's outputs are visible.
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::to(&output).key("k").payload("end"))
        .unwrap();
    producer.commit_transaction(WAIT).unwrap();
    let reader = read_committed_consumer(&bs, &unique_name("harness-eos-rc"), &[&output]);
    let out: Vec<String> = collect_messages(&reader, 5, WAIT)
        .iter()
        .map(payload_str)
        .collect();
    assert_eq!(
        out,
        vec!["out-in-0", "out-in-1", "out-in-2", "out-in-3", "end"]
    );
}

/// The jar fetcher's output (what a newcomer sees in a terminal log or CI) is plain text:
/// Maven 3.8 writes colour resets even when told not to, and the script strips them.
#[test]
fn fetch_jars_prints_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let libs = dir.path().join("libs");
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/kafka/fetch-jars.sh"
        ))
        .arg(&libs)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), libs.display().to_string());
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "escape codes in fetch-jars output: {:?}",
        stderr
    );
    assert!(stderr.contains("jars in"), "{stderr}");
    assert!(libs.join(".complete").exists());
}
