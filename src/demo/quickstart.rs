//! `slawatch publish` and `slawatch tail`: the two small Kafka clients a first run on a real
//! broker needs (scripts/quickstart.sh), so that nothing but slawatch and a broker is
//! required. `publish` sends ConversationEvent JSON lines keyed by ticket id; `tail` prints
//! SLA events as the demo's feed does (or as they are, with `--json`).
use crate::codec;
use crate::demo::feed;
use crate::runtime::kafka::init_tls;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{origin}:{line}: {message}")]
    Input {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("cannot read {origin}: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("cannot write: {0}")]
    Write(std::io::Error),
    #[error("{0} record(s) were not delivered within {1:?}")]
    Undelivered(usize, Duration),
    #[error("topic {0:?} does not exist (is `slawatch run` up? it creates its topics)")]
    NoTopic(String),
}

/// Publishes the ConversationEvent JSON lines of `input` to `topic`, keyed by ticket id,
/// with `content-type: application/json`. Every line is checked first (a bad line names its
/// number and nothing is sent). Returns the number of records delivered.
pub fn publish(
    brokers: &str,
    topic: &str,
    input: impl BufRead,
    origin: &str,
    timeout: Duration,
) -> Result<usize, ClientError> {
    let mut records = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|source| ClientError::Read {
            origin: origin.to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| ClientError::Input {
            origin: origin.to_string(),
            line: i + 1,
            message,
        };
        let decoded = codec::decode_json(line.as_bytes()).map_err(|e| bad(e.to_string()))?;
        records.push((decoded.event.ticket_id.to_string(), line));
    }
    init_tls();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()?;
    for (key, line) in &records {
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/json"),
        });
        let mut record = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(line.as_str())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(timeout).map_err(|_| {
        ClientError::Undelivered(producer.in_flight_count().max(0) as usize, timeout)
    })?;
    Ok(records.len())
}

/// What `tail` prints and when it stops.
#[derive(Clone, Debug)]
pub struct TailOptions {
    pub brokers: String,
    pub topics: Vec<String>,
    /// Print each record's JSON as it is instead of a feed line.
    pub json: bool,
    /// Stop after this many records.
    pub max: Option<u64>,
    /// Stop after this long without a record.
    pub idle: Option<Duration>,
}

/// Prints the SLA events of `topics` from their beginning (committed records only) until
/// `max` records or `idle` time without one; without either it runs until killed. Returns
/// the number of records printed.
pub fn tail(opts: &TailOptions, out: &mut impl Write) -> Result<u64, ClientError> {
    init_tls();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &opts.brokers)
        .set("group.id", "slawatch-tail")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in &opts.topics {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions = md
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if partitions == 0 {
            return Err(ClientError::NoTopic(topic.clone()));
        }
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let mut printed = 0u64;
    let mut last = Instant::now();
    while opts.max.is_none_or(|m| printed < m) && opts.idle.is_none_or(|i| last.elapsed() < i) {
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = result?;
        last = Instant::now();
        let Some(payload) = m.payload() else { continue };
        let text = match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(v) if opts.json => v.to_string(),
            Ok(v) => feed::line(feed::kind_of(&v), &v),
            Err(_) => format!(
                "({} bytes of non-JSON payload on {}; set output_format = \"json\")",
                payload.len(),
                m.topic()
            ),
        };
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(ClientError::Write)?;
        printed += 1;
    }
    Ok(printed)
}
