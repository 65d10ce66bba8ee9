//! The admin API against a running processor: `/readyz`, `/healthz`, `GET /tickets/{tenant}/{id}`
//! (a ticket's live clocks and deadlines), and a policy reload: tickets opened after it use
//! the new policy, tickets already open keep theirs.
mod common;
mod kafka_rt;

use kafka_rt::*;
use slawatch::core::model::*;
use slawatch::core::policy::parse::load_policy_file;
use slawatch::core::time::{Dur, Ts};
use slawatch::runtime::admin;
use slawatch::runtime::time_source::ManualClock;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn chat(ticket: &str, n: u32, at: Ts, body: Body) -> Event {
    Event {
        event_id: format!("{ticket}-{n}").into(),
        ticket_id: ticket.into(),
        occurred_at: at,
        tenant: "acme".into(),
        body,
    }
}

fn opened_chat() -> Body {
    Body::Opened {
        channel: Channel::Chat,
        category: Category::Inquiry,
        urgency: Urgency::General,
        tier: Tier::Standard,
        team: "".into(),
    }
}

#[test]
fn ticket_view_readiness_and_policy_reload() {
    let names = Names::new("admin");
    let cfg = config(&names, "i0", true, "");
    let clock = Arc::new(ManualClock::new(Ts::from_secs(0)));
    let h = start(&cfg, clock.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt
        .block_on(admin::serve(
            "127.0.0.1:0".parse().unwrap(),
            h.control.clone(),
            None,
        ))
        .unwrap();
    wait_ready(&h);
    assert_eq!(get(addr, "/healthz").0, 200);
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    assert_eq!(get(addr, "/tickets/NOPE").0, 404);

    // C1 opens under the default policy (chat: first response 60 s, rule R1).
    let t0 = t("10:00:00");
    produce_events(&names.input, &[chat("C1", 1, t0, opened_chat())], 0);
    // Events apply once the watermark reaches them: let the (caught-up) partitions' clock
    // pass it.
    clock.set(t0.saturating_add(Dur::from_secs(2)));
    wait_for("C1 applied", WAIT, || {
        get(addr, "/tickets/acme/C1").0 == 200
    });
    let v: serde_json::Value = serde_json::from_str(&get(addr, "/tickets/acme/C1").1).unwrap();
    assert_eq!(v["policy"], "chat");
    let fr = v["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "first_response")
        .unwrap()
        .clone();
    assert_eq!(fr["status"], "running");
    assert_eq!(fr["rule"], "R1");
    assert_eq!(fr["start"], "2024-03-04T10:00:00Z");
    assert_eq!(fr["deadline"], "2024-03-04T10:01:00Z");
    assert_eq!(fr["paused"], false);

    // Reload (what SIGHUP does once the file validates): the strict preset gives chat
    // inquiries a 30 s first response (R3). C2, opened afterwards, uses it; C1 keeps R1.
    let strict = Arc::new(load_policy_file(&repo_path("deploy/policies/strict.toml")).unwrap());
    h.control.reload_policy(strict);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let later = t0.saturating_add(Dur::from_secs(5));
    produce_events(
        &names.input,
        &[
            chat("C2", 1, later, opened_chat()),
            chat("C1", 2, later, Body::CustomerMessage),
        ],
        0,
    );
    clock.set(later.saturating_add(Dur::from_secs(2)));
    wait_for("C2 applied", WAIT, || {
        h.control.records_consumed.load(Ordering::Relaxed) >= 3
            && get(addr, "/tickets/acme/C2").0 == 200
    });
    let v2: serde_json::Value = serde_json::from_str(&get(addr, "/tickets/acme/C2").1).unwrap();
    let fr2 = v2["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "first_response")
        .unwrap()
        .clone();
    assert_eq!(fr2["rule"], "R3", "{v2}");
    assert_eq!(fr2["deadline"], "2024-03-04T10:00:35Z", "{v2}");
    assert_ne!(v2["policy_version"], v["policy_version"]);
    let v1: serde_json::Value = serde_json::from_str(&get(addr, "/tickets/acme/C1").1).unwrap();
    let fr1 = v1["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "first_response")
        .unwrap()
        .clone();
    assert_eq!(fr1["rule"], "R1", "open tickets keep their policy: {v1}");
    assert_eq!(v1["policy_version"], v["policy_version"]);
    h.stop().unwrap();
    assert_eq!(
        get(addr, "/healthz").0,
        503,
        "not healthy once the processor stopped"
    );
}
