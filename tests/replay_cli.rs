//! `slawatch replay` as a user runs it: history order whatever the line order, the counts on
//! stderr, `--config` taking `run`'s engine settings, `--until` before the data refused,
//! `--summary` not counting refused events as accepted.
use std::path::Path;
use std::process::{Command, Output};

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/policies/default.toml");

fn ev(id: &str, ticket: &str, at: &str, body: &str) -> String {
    format!(
        r#"{{"eventId":"{id}","ticketId":"{ticket}","occurredAt":"2024-03-04T{at}Z","tenant":"acme",{body}}}"#
    )
}

fn opened(id: &str, ticket: &str, at: &str) -> String {
    ev(
        id,
        ticket,
        at,
        r#""opened":{"channel":"CHANNEL_CHAT","category":"CATEGORY_INQUIRY","urgency":"URGENCY_GENERAL"}"#,
    )
}

fn customer(id: &str, ticket: &str, at: &str) -> String {
    ev(id, ticket, at, r#""customerMessage":{}"#)
}

fn answer(id: &str, ticket: &str, at: &str) -> String {
    ev(
        id,
        ticket,
        at,
        r#""agentMessage":{"kind":"REPLY_KIND_ANSWER","audience":"AUDIENCE_CUSTOMER"}"#,
    )
}

/// Runs `slawatch replay ARGS` over `lines`; the test's SLAWATCH_* variables are not the
/// config's.
fn replay(dir: &Path, lines: &[String], args: &[&str]) -> Output {
    let input = dir.join("events.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slawatch"));
    cmd.arg("replay")
        .arg("--input")
        .arg(&input)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLAWATCH_") {
            cmd.env_remove(&k);
        }
    }
    cmd.output().expect("run slawatch replay")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two chat tickets; T2 is answered before its first-response target (chat: 60 s), T1 not.
fn two_tickets() -> Vec<String> {
    vec![
        opened("a1", "T1", "10:00:00"),
        customer("a2", "T1", "10:00:10"),
        answer("a3", "T1", "10:02:00"),
        opened("b1", "T2", "10:00:05"),
        answer("b2", "T2", "10:00:20"),
    ]
}

fn config(dir: &Path, extra: &str) -> String {
    let path = dir.join("slawatch.toml");
    std::fs::write(
        &path,
        format!("brokers = \"localhost:9092\"\npolicy_file = \"{POLICY}\"\n{extra}\n"),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn rule4_replay_applies_history_in_time_order_whatever_the_line_order() {
    // Given the same events sorted by time, and grouped per ticket (as exports come)
    let dir = tempfile::tempdir().unwrap();
    let sorted = {
        let mut v = two_tickets();
        v.sort_by_key(|l| l[l.find("occurredAt").unwrap()..].to_string());
        v
    };
    // When both are replayed
    let a = replay(dir.path(), &sorted, &["--policy", POLICY]);
    let b = replay(dir.path(), &two_tickets(), &["--policy", POLICY]);
    // Then the outputs are byte-identical, and stderr says how many lines were out of order
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
    assert!(stderr(&a).contains(" 0 out of order"), "{}", stderr(&a));
    assert!(stderr(&b).contains(" 2 out of order"), "{}", stderr(&b));
    // And as a stream, the grouped file reads T2's events late: a different result.
    let c = replay(
        dir.path(),
        &two_tickets(),
        &["--policy", POLICY, "--as-stream"],
    );
    assert!(stderr(&c).contains(" 2 late"), "{}", stderr(&c));
}

#[test]
fn replay_reports_duplicates_and_rejections_by_reason() {
    // Given a duplicate line and two malformed lines
    let dir = tempfile::tempdir().unwrap();
    let mut lines = two_tickets();
    lines.push(answer("b2", "T2", "10:00:20"));
    lines.push("{not json".into());
    lines
        .push(r#"{"eventId":"x","occurredAt":"2024-03-04T10:00:00Z","customerMessage":{}}"#.into());
    // When replayed
    let o = replay(dir.path(), &lines, &["--policy", POLICY]);
    // Then it exits 3 and counts them
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("1 duplicates"), "{err}");
    assert!(
        err.contains("2 rejected (missing_field: 1, undecodable: 1)"),
        "{err}"
    );
}

#[test]
fn replay_config_takes_the_engine_section_of_run() {
    let dir = tempfile::tempdir().unwrap();
    // Given a config whose [engine] allows one open ticket per partition
    let cfg = config(dir.path(), "[engine]\nmax_open_tickets_per_partition = 1");
    // When replayed with it
    let with = replay(dir.path(), &two_tickets(), &["--config", &cfg, "--summary"]);
    // Then the second ticket is refused for capacity, as `run` would, and is not accepted
    let err = stderr(&with);
    assert_eq!(with.status.code(), Some(3), "{err}");
    assert!(err.contains("b1 of ticket T2: capacity"), "{err}");
    assert!(err.contains("1 rejected (capacity: 1)"), "{err}");
    assert!(
        err.contains("5 records, 4 accepted, 1 rejected"),
        "the summary counts refused events as rejected only: {err}"
    );
    // And without it both tickets are accepted
    let without = replay(dir.path(), &two_tickets(), &["--policy", POLICY]);
    assert!(without.status.success(), "{}", stderr(&without));
}

#[test]
fn replay_config_takes_the_allowed_lateness_of_run() {
    let dir = tempfile::tempdir().unwrap();
    // Given T2's events 5 s behind T1's in line order, and a config allowing 10 s lateness
    let cfg = config(dir.path(), "allowed_lateness_ms = 10000");
    let lines = vec![
        opened("a1", "T1", "10:00:00"),
        customer("a2", "T1", "10:00:10"),
        opened("b1", "T2", "10:00:05"),
    ];
    // When streamed with and without it
    let with = replay(dir.path(), &lines, &["--config", &cfg, "--as-stream"]);
    let without = replay(dir.path(), &lines, &["--policy", POLICY, "--as-stream"]);
    // Then only the default 1 s makes T2's opened late
    assert!(stderr(&with).contains(" 0 late"), "{}", stderr(&with));
    assert!(stderr(&without).contains(" 1 late"), "{}", stderr(&without));
    // And an explicit --allowed-lateness beats the file
    let flag = replay(
        dir.path(),
        &lines,
        &["--config", &cfg, "--as-stream", "--allowed-lateness", "1s"],
    );
    assert!(stderr(&flag).contains(" 1 late"), "{}", stderr(&flag));
}

#[test]
fn replay_until_before_the_data_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for order in [&[][..], &["--as-stream"][..]] {
        // Given --until an hour before the last event
        let mut args = vec!["--policy", POLICY, "--until", "2024-03-04T09:00:00Z"];
        args.extend_from_slice(order);
        // When replayed
        let o = replay(dir.path(), &two_tickets(), &args);
        // Then it exits 2 naming --until and the watermark the data reaches
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{order:?}: {err}");
        assert!(
            err.contains("--until 2024-03-04T09:00:00Z is before the watermark"),
            "{err}"
        );
        // (a stream stops at the first event past it; history knows the last event)
        if order.is_empty() {
            assert!(err.contains("(2024-03-04T10:01:59Z: "), "{err}");
        }
    }
    // And an --until at the watermark the data reaches is accepted
    let o = replay(
        dir.path(),
        &two_tickets(),
        &["--policy", POLICY, "--until", "2024-03-04T10:01:59Z"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn replay_spills_sorted_runs_under_a_small_sort_budget() {
    // Given a few thousand events in reverse time order
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for i in 0..3000 {
        let t = format!("1{}:{:02}:{:02}", i / 3600, (i / 60) % 60, i % 60);
        let ticket = format!("T{i}");
        lines.push(opened(&format!("o{i}"), &ticket, &t));
    }
    lines.reverse();
    // When replayed with 64 KiB to sort in, and with the default budget
    let small = replay(
        dir.path(),
        &lines,
        &["--policy", POLICY, "--sort-memory", "64KiB"],
    );
    let big = replay(dir.path(), &lines, &["--policy", POLICY]);
    // Then runs were spilled and the outputs are identical
    assert!(small.status.success(), "{}", stderr(&small));
    assert!(
        stderr(&small).contains("sorted runs spilled"),
        "{}",
        stderr(&small)
    );
    assert!(!stderr(&big).contains("spilled"), "{}", stderr(&big));
    assert_eq!(small.stdout, big.stdout);
    assert!(!small.stdout.is_empty());
}

const FRAMING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/framing");

/// The record values of a length-delimited file (varint length, value).
fn delimited_values(mut file: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !file.is_empty() {
        let (mut len, mut pos) = (0usize, 0usize);
        for shift in (0..).step_by(7) {
            let b = file[pos];
            pos += 1;
            len |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push(file[pos..pos + len].to_vec());
        file = &file[pos + len..];
    }
    out
}

/// `slawatch replay --input PATH ARGS` (no SLAWATCH_* variables).
fn replay_file(path: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slawatch"));
    cmd.arg("replay").arg("--input").arg(path).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLAWATCH_") {
            cmd.env_remove(&k);
        }
    }
    cmd.output().expect("run slawatch replay")
}

const UNTIL: [&str; 4] = ["--policy", POLICY, "--until", "2024-03-06T00:00:00Z"];

#[test]
fn replay_format_reads_each_framing_fixture_as_its_json_events() {
    // Given the seven events of tests/data/framing/ as JSON lines (the JSON values Python's
    // json_format wrote, one per line) and their replay,
    let dir = tempfile::tempdir().unwrap();
    let json = std::fs::read(format!("{FRAMING}/events.json.bin")).unwrap();
    let lines: Vec<String> = delimited_values(&json)
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    let reference = replay(dir.path(), &lines, &UNTIL);
    assert!(reference.status.success(), "{}", stderr(&reference));
    assert!(!reference.stdout.is_empty());
    assert!(
        stderr(&reference).starts_with("replay: 7 lines, 7 events accepted"),
        "{}",
        stderr(&reference)
    );
    // when each fixture (records as producers frame them, length-delimited) is replayed
    // with --format auto and with its own format,
    for (file, fixed, read_as) in [
        ("events.json.bin", "json", "json"),
        ("events.protobuf.bin", "protobuf", "protobuf"),
        (
            "events.schema-registry-protobuf.bin",
            "schema-registry-protobuf",
            "schema-registry-protobuf",
        ),
        (
            "events.schema-registry-json.bin",
            "schema-registry-json",
            "schema-registry-json",
        ),
        // The schema id went to a header, which a file does not keep: a bare message.
        (
            "events.schema-registry-protobuf-header.bin",
            "protobuf",
            "protobuf",
        ),
    ] {
        for format in ["auto", fixed] {
            let path = Path::new(FRAMING).join(file);
            let o = replay_file(&path, &[&UNTIL[..], &["--format", format]].concat());
            // then the SLA events are the JSON events' byte for byte, every record is
            // accepted, and stderr says what the records were read as.
            assert!(
                o.status.success(),
                "{file} --format {format}: {}",
                stderr(&o)
            );
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&reference.stdout),
                "{file} --format {format}"
            );
            assert!(
                stderr(&o).starts_with(&format!(
                    "replay: 7 records ({read_as}: 7), 7 events accepted"
                )),
                "{file} --format {format}: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn replay_wrong_format_is_rejected_naming_the_record_and_the_expected_form() {
    let dir = tempfile::tempdir().unwrap();
    // Given raw protobuf records read as Schema Registry protobuf,
    let o = replay_file(
        &Path::new(FRAMING).join("events.protobuf.bin"),
        &[&UNTIL[..], &["--format", "schema-registry-protobuf"]].concat(),
    );
    // then every record is rejected with its number, the reason and the expected form;
    // nothing is output and the exit code says something was rejected (no crash).
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(o.stdout.is_empty());
    assert!(
        err.contains("record 1: undecodable (")
            && err.contains("no Schema Registry magic byte (0 or 1): the value starts with 0x0a")
            && err.contains("--format schema-registry-protobuf expects length-delimited records, each a Schema Registry header"),
        "{err}"
    );
    assert!(
        err.contains(" 0 events accepted") && err.contains("; 7 rejected (undecodable: 7)"),
        "{err}"
    );

    // Given Schema Registry JSON records read as plain JSON,
    let o = replay_file(
        &Path::new(FRAMING).join("events.schema-registry-json.bin"),
        &[&UNTIL[..], &["--format", "json"]].concat(),
    );
    // then the message says the value starts with a magic byte and which format fits.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("record 1: undecodable (")
            && err.contains("\"schema-registry-json\" or \"auto\"")
            && err.contains("--format json expects proto3 JSON"),
        "{err}"
    );

    // Given JSON lines read as length-delimited protobuf,
    let lines: Vec<String> = two_tickets();
    let o = replay(
        dir.path(),
        &lines,
        &[&UNTIL[..], &["--format", "protobuf"]].concat(),
    );
    // then the first record is rejected naming the expected form and that the file looks
    // like JSON lines; whatever follows is rejected too, never silently read.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(o.stdout.is_empty());
    assert!(
        err.contains("record 1: ")
            && err.contains("--format protobuf expects length-delimited records")
            && err.contains("the file starts with '{': JSON lines? try --format json or auto"),
        "{err}"
    );
    assert!(err.contains(" 0 events accepted"), "{err}");
}

#[test]
fn replay_reports_events_of_tickets_never_opened() {
    // Given two tickets' events without their openings (the export lost them), within the
    // pre-open buffer's hour of the end, and one ticket opened and answered,
    let dir = tempfile::tempdir().unwrap();
    let lines = vec![
        opened("a1", "T1", "10:00:00"),
        answer("a2", "T1", "10:00:20"),
        customer("x1", "X", "10:00:30"),
        answer("x2", "X", "10:00:40"),
        customer("y1", "Y", "10:00:50"),
    ];
    // when replayed with --summary,
    let o = replay(dir.path(), &lines, &["--policy", POLICY, "--summary"]);
    // then stderr names each waiting event and counts them, and the summary says so too;
    // they were not refused, so nothing is rejected.
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for (id, ticket) in [("x1", "X"), ("x2", "X"), ("y1", "Y")] {
        assert!(
            err.contains(&format!(
                "event {id} of ticket {ticket} (tenant acme): never opened (left in the pre-open buffer at the end)"
            )),
            "{err}"
        );
    }
    assert!(
        err.contains(
            "; 3 events of 2 tickets never opened (left in the pre-open buffer); 0 rejected"
        ),
        "{err}"
    );
    assert!(
        err.contains("0 unknown enum values, 3 events of 2 tickets never opened"),
        "{err}"
    );
}
