//! `slawatch demo`: everything in one process, nothing to install. librdkafka's in-process
//! mock cluster stands in for Kafka; a traffic generator produces realistic support
//! conversations on an accelerated event-time clock; **the same processor as `slawatch run`**
//! consumes them; a reader prints the breaches, escalations, reminders and surges it
//! publishes, and every few seconds a table of first-response p50/p95 per channel.
//!
//! The mock cluster accepts transactional offset commits but discards them, and shows
//! aborted records to read_committed readers, so it cannot demonstrate exactly-once: the demo
//! runs the processor at-least-once and says so. The integration tests prove exactly-once
//! against a real Apache Kafka broker.
pub mod feed;
/// `slawatch publish` and `slawatch tail`, the quick start's two Kafka clients (here, not in
/// the runtime: `tail` prints with the demo's feed, and the runtime depends on no demo code).
pub mod quickstart;
pub mod traffic;

use crate::codec;
use crate::core::model::{Channel, Event};
use crate::core::policy::builtin::PolicySource;
use crate::core::policy::LatencyMetric;
use crate::core::ticket::Observation;
use crate::core::time::{Dur, Ts};
use crate::runtime::admin;
use crate::runtime::config::Config;
use crate::runtime::control::Control;
use crate::runtime::processor::{self, ProcessorOptions};
use crate::runtime::records;
use crate::runtime::service::{init_logging, load_policy, RunError};
use crate::runtime::time_source::{Clock, ScaledClock};
use crate::runtime::topics::Topics;
use crate::telemetry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use traffic::{Traffic, TrafficOptions};

/// Options of `slawatch demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Simulated seconds per real second.
    pub speed: f64,
    /// Real time the demo runs.
    pub duration: Duration,
    pub tickets_per_min: f64,
    pub admin_listen: SocketAddr,
    /// A policy file, or `None` for the built-in default.
    pub policy_file: Option<PathBuf>,
    pub seed: u64,
}

const PARTITIONS: i32 = 4;
const INPUT: &str = "conversations";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("mock cluster: {0}")]
    Mock(#[from] rdkafka::error::KafkaError),
}

/// First-response samples per channel (counted seconds), from the processor's hook.
#[derive(Default)]
struct Samples {
    first_response: BTreeMap<Channel, Vec<f64>>,
    breached: BTreeMap<Channel, u64>,
}

/// Set when stdout is closed (`slawatch demo | head`): the demo then stops as after its
/// duration, instead of panicking in `println!`.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// `println!` that notes a closed stdout instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
        }
    }};
}

/// Runs the demo until `duration` passes or Ctrl-C.
pub fn run(opts: DemoOptions) -> Result<(), DemoError> {
    if std::env::var_os("RUST_LOG").is_none() {
        // The live feed is the output; keep logs to warnings.
        std::env::set_var("RUST_LOG", "warn");
    }
    init_logging();
    let policy = load_policy(&PolicySource::from_option(opts.policy_file.clone()))?;
    // The mock cluster lives inside this client (`test.mock.num.brokers`), which gives
    // access to its handle: the coordinator's default 3 s initial-rebalance delay is set to
    // 0, as on the test broker.
    let mock_owner: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()?;
    let mock: MockCluster<'_, _> = mock_owner.client().mock_cluster().ok_or(DemoError::Mock(
        rdkafka::error::KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::Fail),
    ))?;
    // SAFETY: the handle belongs to `mock_owner`, alive for the whole demo.
    unsafe {
        let handle =
            rdkafka::bindings::rd_kafka_handle_mock_cluster(mock_owner.client().native_ptr());
        if !handle.is_null() {
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(handle, 0);
        }
    }
    let bootstrap = mock.bootstrap_servers();
    let mut cfg = Config::from_sources(
        &format!(
            r#"
brokers = "{bootstrap}"
group_id = "slawatch-demo"
instance_id = "demo-0"
input_topics = ["{INPUT}"]
exactly_once = false
commit_interval_ms = 100
allowed_lateness_ms = 1000
[topics]
create = false
"#
        ),
        "demo config",
        Vec::new(),
    )
    .map_err(RunError::from)?;
    cfg.admin_listen = opts.admin_listen;
    cfg.policy_file = opts.policy_file.clone();
    let topics = Topics::new(&cfg, false);
    for t in [&topics.state, &topics.repartition, &topics.surge_state] {
        mock.create_topic(t, PARTITIONS, 1)?;
    }
    mock.create_topic(INPUT, PARTITIONS, 1)?;
    for t in topics.outputs() {
        mock.create_topic(t, PARTITIONS, 1)?;
    }
    mock.create_topic(&topics.dead_letters, 1, 1)?;

    // Event time starts at today's 09:00 in Shanghai, so the after-sales calendar is open.
    let origin = demo_origin();
    let clock = Arc::new(ScaledClock::new(origin, opts.speed));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let control = Control::new();
    let metrics = rt
        .block_on(async { telemetry::install_recorder(&telemetry::TelemetryOptions::default()) })
        .map_err(RunError::from)?;
    let bound = match rt.block_on(admin::serve(
        opts.admin_listen,
        control.clone(),
        Some(metrics.clone()),
    )) {
        Ok(a) => a,
        Err(_) => rt
            .block_on(admin::serve(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                control.clone(),
                Some(metrics),
            ))
            .map_err(|source| RunError::Admin {
                addr: opts.admin_listen,
                source,
            })?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }

    say!("slawatch demo — in-process mock Kafka at {bootstrap}, {PARTITIONS} partitions");
    say!(
        "  guarantee: AT-LEAST-ONCE. librdkafka's mock cluster accepts but discards offsets sent in a \
         transaction and shows aborted records to read_committed readers, so exactly-once cannot be \
         shown here; `slawatch run` defaults to exactly-once on a real broker (see tests/kafka_*.rs)."
    );
    say!(
        "  clock: event time starts {} and runs {}× real time; {} new tickets per simulated minute; \
         a surge of tenant globex on chat is planted at +70 min",
        origin, opts.speed, opts.tickets_per_min
    );
    say!(
        "  metrics: http://{bound}/metrics   ticket view: http://{bound}/tickets/T1   stops after {:?} or Ctrl-C\n",
        opts.duration
    );

    let samples = Arc::new(Mutex::new(Samples::default()));
    let on_observation = {
        let samples = samples.clone();
        Arc::new(move |o: &Observation| {
            if o.metric == Some(LatencyMetric::FirstResponse) && !o.censored {
                let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
                s.first_response
                    .entry(o.channel)
                    .or_default()
                    .push(o.counted.as_secs_f64());
                if o.breached {
                    *s.breached.entry(o.channel).or_default() += 1;
                }
            }
        })
    };
    let handle = processor::start(
        ProcessorOptions {
            cfg: cfg.clone(),
            topics: topics.clone(),
            policy,
            clock: clock.clone(),
            rebuild_from_input: false,
            on_observation: Some(on_observation),
            on_output: None,
            describe_topic_configs: false,
        },
        control.clone(),
    )
    .map_err(RunError::from)?;

    let produced = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, clock, produced, bootstrap) = (
            stop.clone(),
            clock.clone(),
            produced.clone(),
            bootstrap.clone(),
        );
        let topts = TrafficOptions {
            tickets_per_min: opts.tickets_per_min,
            seed: opts.seed,
            ..TrafficOptions::default()
        };
        let lead = Dur((opts.speed * 0.1 * 1e9) as i64).max(Dur::from_secs(2));
        std::thread::spawn(move || {
            produce_traffic(&bootstrap, origin, topts, clock, lead, &stop, &produced)
        })
    };
    let feed = {
        let (stop, bootstrap, topics) = (stop.clone(), bootstrap.clone(), topics.clone());
        std::thread::spawn(move || print_feed(&bootstrap, &topics, &stop))
    };

    let started = Instant::now();
    let mut last_table = Instant::now();
    while started.elapsed() < opts.duration
        && !stop.load(Ordering::SeqCst)
        && !STDOUT_CLOSED.load(Ordering::SeqCst)
        && !handle.is_finished()
    {
        std::thread::sleep(Duration::from_millis(50));
        if last_table.elapsed() >= Duration::from_secs(5) {
            last_table = Instant::now();
            let status = match control.not_ready_reason() {
                None => "ready".to_string(),
                Some(why) => format!("not ready: {why}"),
            };
            print_table(
                &samples,
                &control,
                clock.now(),
                produced.load(Ordering::Relaxed),
                &status,
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = traffic.join();
    let result = handle.stop();
    let _ = feed.join();
    say!("\nfinal:");
    let status = match &result {
        Ok(()) => "stopped: everything consumed is committed".to_string(),
        Err(e) => format!("stopped with an error: {e}"),
    };
    print_table(
        &samples,
        &control,
        clock.now(),
        produced.load(Ordering::Relaxed),
        &status,
    );
    drop(mock);
    drop(mock_owner);
    result.map_err(RunError::from)?;
    Ok(())
}

fn demo_origin() -> Ts {
    use chrono::{TimeZone, Utc};
    let tz = chrono_tz::Asia::Shanghai;
    let today = Utc::now().with_timezone(&tz).date_naive();
    match today
        .and_hms_opt(9, 0, 0)
        .and_then(|nine| tz.from_local_datetime(&nine).single())
    {
        Some(t) => Ts::from_chrono(&t),
        None => Ts::from_chrono(&Utc::now()),
    }
}

fn produce_traffic(
    bootstrap: &str,
    origin: Ts,
    opts: TrafficOptions,
    clock: Arc<ScaledClock>,
    lead: Dur,
    stop: &AtomicBool,
    produced: &AtomicU64,
) {
    let producer: BaseProducer = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "1")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("demo traffic: cannot create a producer: {e}");
            return;
        }
    };
    let mut gen = Traffic::new(origin, opts);
    let mut batch: Vec<Event> = Vec::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        // Events are produced slightly ahead of the simulated clock (they wait in the
        // engine until the watermark reaches them), so real-time delivery delays, magnified
        // by the speed-up, never make them late.
        gen.until(clock.now().saturating_add(lead), &mut batch);
        for ev in batch.drain(..) {
            n += 1;
            // Mostly protobuf (no header), a third as proto3 JSON, and now and then a
            // malformed record to show the dead-letter topic.
            let (value, ct): (Vec<u8>, Option<&str>) = if n.is_multiple_of(997) {
                (b"{\"ticketId\": oops".to_vec(), Some(records::JSON))
            } else if n.is_multiple_of(3) {
                (codec::event_to_json(&ev).into_bytes(), Some(records::JSON))
            } else {
                (codec::event_to_protobuf(&ev), None)
            };
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(INPUT)
                .key(ev.ticket_id.as_bytes())
                .payload(value.as_slice())
                .timestamp(ev.occurred_at.0 / 1_000_000);
            if let Some(ct) = ct {
                rec = rec.headers(OwnedHeaders::new().insert(Header {
                    key: records::CONTENT_TYPE,
                    value: Some(ct),
                }));
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            produced.fetch_add(1, Ordering::Relaxed);
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = producer.flush(Duration::from_secs(5));
}

fn print_feed(bootstrap: &str, topics: &Topics, stop: &AtomicBool) {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "slawatch-demo-feed")
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo feed: cannot create a consumer: {e}");
            return;
        }
    };
    let mut tpl = TopicPartitionList::new();
    for t in [
        &topics.breaches,
        &topics.escalations,
        &topics.reminders,
        &topics.surges,
    ] {
        for p in 0..PARTITIONS {
            let _ = tpl.add_partition_offset(t, p, Offset::Beginning);
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        eprintln!("demo feed: {e}");
        return;
    }
    // Records are gathered for a second and printed in fired-time order: the output
    // topics' partitions arrive interleaved.
    const PER_SECOND: usize = 6;
    let mut window = Instant::now();
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let flush = |batch: &mut Vec<serde_json::Value>| {
        let w = feed::arrange(batch, PER_SECOND);
        for l in &w.lines {
            say!("{l}");
        }
        if let Some(more) = feed::hidden_line(&w.hidden) {
            say!("{more}");
        }
        batch.clear();
    };
    while !stop.load(Ordering::SeqCst) && !STDOUT_CLOSED.load(Ordering::SeqCst) {
        if window.elapsed() >= Duration::from_secs(1) {
            flush(&mut batch);
            window = Instant::now();
        }
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        if let Some(v) = m
            .payload()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        {
            batch.push(v);
        }
    }
    flush(&mut batch);
}

/// `status` ends the headline: "ready", "not ready: <why>", or how the demo stopped.
fn print_table(samples: &Mutex<Samples>, control: &Control, now: Ts, produced: u64, status: &str) {
    let s = samples.lock().unwrap_or_else(|p| p.into_inner());
    say!(
        "\n── simulated {} │ {} events produced │ {} SLA events │ {} dead letters │ {} commits │ {status}",
        now.to_chrono().format("%Y-%m-%d %H:%M:%SZ"),
        produced,
        control.outputs_produced.load(Ordering::Relaxed),
        control.dead_letters_produced.load(Ordering::Relaxed),
        control.transactions_committed.load(Ordering::Relaxed),
    );
    say!("   first response   channel      n      p50      p95   breached");
    for (ch, v) in &s.first_response {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[(((p * v.len() as f64).ceil() as usize).max(1) - 1).min(v.len() - 1)];
        say!(
            "                    {:<8} {:>6} {:>7.0}s {:>7.0}s {:>8}",
            ch.as_str(),
            v.len(),
            q(0.5),
            q(0.95),
            s.breached.get(ch).copied().unwrap_or(0)
        );
    }
    say!();
}
