//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz` (the processing threads
//! run and make progress), `/readyz` (every assigned partition is restored), `GET /tickets/{tenant}/{id}`
//! and, for a ticket without tenant, `GET /tickets/{id}` (a ticket's live clocks and
//! deadlines, answered by the processing thread; a ticket is (tenant, id), rule 11; a `/`
//! inside a tenant or id is written `%2F`) and `GET /tickets/{tenant}/{id}/timeline` (its
//! live trail, `explain::live_trail`). Read-only: there is no endpoint that changes anything.
use crate::runtime::control::Control;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long `/tickets/{id}` waits for the processing thread.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct State {
    control: Arc<Control>,
    metrics: Option<PrometheusHandle>,
}

/// Binds `addr` and serves until the runtime stops. Returns the bound address (useful with
/// port 0).
pub async fn serve(
    addr: SocketAddr,
    control: Arc<Control>,
    metrics: Option<PrometheusHandle>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let state = State { control, metrics };
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

fn text(status: StatusCode, body: impl Into<Bytes>, ct: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// The `/healthz` answer at `now`: every processing thread runs and has made progress
/// within [`crate::runtime::heartbeat::STALL_BOUND`].
fn health(control: &Control, now: std::time::Instant) -> (StatusCode, String) {
    if !control.is_alive() {
        let why = control
            .last_error()
            .unwrap_or_else(|| "processor not running".into());
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
    }
    match control.heartbeats.stalled_at(now) {
        Some(s) => {
            tracing::error!(thread = s.thread, stalled_s = s.since.as_secs(), "a processing thread makes no progress (a client call that never returns): not healthy");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "processing thread {} has made no progress for {} s\n",
                    s.thread,
                    s.since.as_secs()
                ),
            )
        }
        None => (StatusCode::OK, "ok\n".into()),
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "read-only: GET only\n",
            PLAIN,
        );
    }
    let path = req.uri().path();
    match path {
        "/metrics" => match &state.metrics {
            Some(h) => text(
                StatusCode::OK,
                h.render(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            None => text(
                StatusCode::NOT_FOUND,
                "no metrics recorder installed\n",
                PLAIN,
            ),
        },
        "/healthz" => {
            let (status, body) = health(&state.control, std::time::Instant::now());
            text(status, body, PLAIN)
        }
        "/readyz" => {
            let c = &state.control;
            let mut body = serde_json::json!({
                "ready": c.is_ready(),
                "assigned_partitions": c.assigned_partitions.load(std::sync::atomic::Ordering::Relaxed),
                "restoring_partitions": c.restoring_partitions.load(std::sync::atomic::Ordering::Relaxed),
            });
            if let Some(reason) = c.not_ready_reason() {
                body["reason"] = reason.into();
            }
            let body = format!("{body}\n");
            let status = if c.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, body, JSON)
        }
        _ => {
            if let Some(rest) = path
                .strip_prefix("/tickets/")
                .and_then(|r| r.strip_suffix("/timeline"))
            {
                return timeline(state, rest).await;
            }
            if let Some(rest) = path.strip_prefix("/tickets/") {
                let (tenant, id) = ticket_path(rest);
                if id.is_empty() {
                    return text(
                        StatusCode::NOT_FOUND,
                        "usage: /tickets/{tenant}/{id}, or /tickets/{id} for a ticket without tenant\n",
                        PLAIN,
                    );
                }
                return match ask(state, &tenant, &id).await {
                    Err(unavailable) => unavailable,
                    Ok(Some(v)) => text(StatusCode::OK, format!("{v}\n"), JSON),
                    Ok(None) => text(
                        StatusCode::NOT_FOUND,
                        format!(
                            "{}\n",
                            serde_json::json!({
                                "error": if tenant.is_empty() {
                                    format!("ticket {id} without tenant is not held by this replica (a tenant's ticket: /tickets/{{tenant}}/{{id}})")
                                } else {
                                    format!("ticket {id} of tenant {tenant} is not held by this replica")
                                }
                            })
                        ),
                        JSON,
                    ),
                };
            }
            text(
                StatusCode::NOT_FOUND,
                "endpoints: /metrics /healthz /readyz /tickets/{tenant}/{id} /tickets/{id} /tickets/{tenant}/{id}/timeline\n",
                PLAIN,
            )
        }
    }
}

/// `/tickets/{tenant}/{id}/timeline` (`rest` is `{tenant}/{id}`): the ticket's live trail
/// (`explain::live_trail`) when this replica holds the ticket of that tenant. An empty
/// tenant is written `/tickets//{id}/timeline`.
async fn timeline(state: &State, rest: &str) -> Response<Full<Bytes>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    let Some((tenant, id)) = rest.split_once('/') else {
        return text(
            StatusCode::NOT_FOUND,
            "usage: /tickets/{tenant}/{id}/timeline\n",
            PLAIN,
        );
    };
    let (tenant, id) = (percent_decode(tenant), percent_decode(id));
    if id.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            "usage: /tickets/{tenant}/{id}/timeline\n",
            PLAIN,
        );
    }
    match ask(state, &tenant, &id).await {
        Err(unavailable) => unavailable,
        Ok(Some(v)) if v["tenant"] == tenant.as_str() && v.get("timeline").is_some() => {
            text(StatusCode::OK, format!("{}\n", v["timeline"]), JSON)
        }
        Ok(_) => text(
            StatusCode::NOT_FOUND,
            format!(
                "{}\n",
                serde_json::json!({
                    "error": format!("ticket {id} of tenant {tenant:?} is not held by this replica")
                })
            ),
            JSON,
        ),
    }
}

/// Asks the processing threads for a ticket's view (`None`: not held here); a 503 response
/// when the thread is gone or does not answer within [`QUERY_TIMEOUT`].
async fn ask(
    state: &State,
    tenant: &str,
    id: &str,
) -> Result<Option<serde_json::Value>, Response<Full<Bytes>>> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let unavailable = |why: &'static str| text(StatusCode::SERVICE_UNAVAILABLE, why, PLAIN);
    let Some(replies) = state.control.query_ticket(tenant, id) else {
        return Err(unavailable("processor not running\n"));
    };
    // One reply per processing thread; at most one holds the ticket.
    let all = async {
        let mut found = None;
        for rx in replies {
            found = found.or(rx.await?);
        }
        Ok::<_, tokio::sync::oneshot::error::RecvError>(found)
    };
    match tokio::time::timeout(QUERY_TIMEOUT, all).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(unavailable("processor did not answer\n")),
    }
}

/// `{tenant}/{id}` or `{id}` (tenant empty), each percent-decoded after the split.
fn ticket_path(rest: &str) -> (String, String) {
    match rest.split_once('/') {
        Some((tenant, id)) => (percent_decode(tenant), percent_decode(id)),
        None => (String::new(), percent_decode(rest)),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("T%2F1"), "T/1");
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn health_fails_when_a_running_thread_makes_no_progress() {
        use crate::runtime::heartbeat::STALL_BOUND;
        use std::time::{Duration, Instant};
        let control = Control::new();
        let _queries = control.start_threads(1);
        let now = Instant::now();
        assert_eq!(
            health(&control, now).0,
            StatusCode::SERVICE_UNAVAILABLE,
            "not started"
        );
        control.thread_alive(true);
        let beat = control.heartbeats.register(0);
        beat.beat();
        assert_eq!(
            health(&control, Instant::now()),
            (StatusCode::OK, "ok\n".into())
        );
        let (status, body) = health(
            &control,
            Instant::now() + STALL_BOUND + Duration::from_secs(1),
        );
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("processing thread 0 has made no progress for 18"),
            "{body}"
        );
    }

    #[test]
    fn rule11_ticket_paths_name_tenant_and_id() {
        assert_eq!(ticket_path("1234"), (String::new(), "1234".into()));
        assert_eq!(ticket_path("acme/1234"), ("acme".into(), "1234".into()));
        assert_eq!(ticket_path("a%2Fb/T%2F1"), ("a/b".into(), "T/1".into()));
        assert_eq!(ticket_path("T%2F1"), (String::new(), "T/1".into()));
    }
}
