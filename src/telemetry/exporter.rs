//! Installing the Prometheus recorder (own listener or the admin server's `/metrics`) and
//! the task that refreshes the single-instance quantile gauges.
use super::*;

// ---------------------------------------------------------------------------------------------
// Exporter
// ---------------------------------------------------------------------------------------------

/// Exporter settings (the listen address is passed separately).
#[derive(Clone, Debug)]
pub struct TelemetryOptions {
    /// Samples kept per (latency kind, policy, channel, urgency) window.
    pub window_samples: usize,
    /// Samples older than this leave the window.
    pub window_max_age: Duration,
    /// How often the in-process quantile gauges are refreshed.
    pub refresh_interval: Duration,
    /// How often the recorder's histograms are drained (keeps `/metrics` rendering cheap).
    /// Until then every observation is held raw (8 B and its share of a block): every 5 s,
    /// a backlog drain held 5 MiB of them at its peak (heaptrack), a figure that grows with
    /// the event rate; every second, a fifth of it.
    pub upkeep_interval: Duration,
    /// The `version` label of `slawatch_build_info`.
    pub version: &'static str,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        TelemetryOptions {
            window_samples: DEFAULT_WINDOW_SAMPLES,
            window_max_age: DEFAULT_WINDOW_MAX_AGE,
            refresh_interval: Duration::from_secs(10),
            upkeep_interval: Duration::from_secs(1),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Errors of installing the metrics exporter.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the metrics exporter must be installed from inside a tokio runtime")]
    NoRuntime,
    #[error("cannot listen for metrics on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("a metrics recorder is already installed in this process")]
    AlreadyInstalled,
    #[error("invalid metrics exporter configuration: {0}")]
    Config(#[source] BuildError),
}

/// The Prometheus builder with slawatch's buckets: [`SLA_LATENCY_BUCKETS`] for the SLA
/// latency histograms, [`RESTORE_BUCKETS`] for restores, [`INTERNAL_LATENCY_BUCKETS`] for the
/// rest. Unit suffixes are off: the names already carry their unit.
pub fn prometheus_builder() -> Result<PrometheusBuilder, TelemetryError> {
    let mut b = PrometheusBuilder::new()
        .set_enable_unit_suffix(false)
        .set_buckets(INTERNAL_LATENCY_BUCKETS)
        .map_err(TelemetryError::Config)?;
    for name in [
        FIRST_RESPONSE_SECONDS,
        NEXT_RESPONSE_SECONDS,
        RESOLUTION_SECONDS,
    ] {
        b = b
            .set_buckets_for_metric(Matcher::Full(name.to_string()), SLA_LATENCY_BUCKETS)
            .map_err(TelemetryError::Config)?;
    }
    b.set_buckets_for_metric(
        Matcher::Full(RESTORE_DURATION_SECONDS.to_string()),
        RESTORE_BUCKETS,
    )
    .map_err(TelemetryError::Config)
}

fn runtime() -> Result<tokio::runtime::Handle, TelemetryError> {
    tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)
}

fn init_windows(opts: &TelemetryOptions) {
    quantiles::init_windows(opts.window_samples, opts.window_max_age);
}

fn after_install(rt: &tokio::runtime::Handle, opts: &TelemetryOptions) {
    describe();
    register_fixed_series();
    set_build_info(opts.version);
    let every = opts.refresh_interval.max(Duration::from_millis(100));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresh_window_quantiles();
        }
    });
}

/// Installs the global recorder with its own HTTP listener on `listen` (any path answers
/// with the metrics). Must run inside a tokio runtime; spawns the listener, the recorder's
/// upkeep and the quantile refresher on it.
pub fn install_exporter(
    listen: SocketAddr,
    opts: &TelemetryOptions,
) -> Result<PrometheusHandle, TelemetryError> {
    let rt = runtime()?;
    init_windows(opts);
    let (recorder, exporter) = {
        let _guard = rt.enter();
        prometheus_builder()?
            .with_http_listener(listen)
            .upkeep_timeout(opts.upkeep_interval)
            .build()
            .map_err(|e| match e {
                BuildError::FailedToCreateHTTPListener(reason) => TelemetryError::Listen {
                    addr: listen,
                    reason,
                },
                other => TelemetryError::Config(other),
            })?
    };
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    rt.spawn(async move {
        if let Err(e) = exporter.await {
            tracing::error!(error = ?e, "metrics listener stopped");
        }
    });
    after_install(&rt, opts);
    tracing::info!(%listen, "metrics exporter listening");
    Ok(handle)
}

/// Installs the global recorder without a listener; serve `handle.render()` from the admin
/// server's `/metrics`. Must run inside a tokio runtime; spawns the recorder's upkeep and the
/// quantile refresher on it.
pub fn install_recorder(opts: &TelemetryOptions) -> Result<PrometheusHandle, TelemetryError> {
    let rt = runtime()?;
    init_windows(opts);
    let recorder = prometheus_builder()?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    let upkeep = handle.clone();
    let every = opts.upkeep_interval.max(Duration::from_millis(100));
    rt.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    after_install(&rt, opts);
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_needs_a_runtime() {
        assert!(matches!(
            install_recorder(&TelemetryOptions::default()),
            Err(TelemetryError::NoRuntime)
        ));
    }
}
