//! Admin queries, policy reloads and the periodic metrics.
use super::*;

impl Processor {
    pub(super) fn query(&self, tenant: &str, ticket_id: &str) -> Option<serde_json::Value> {
        self.inputs.values().find_map(|t| {
            ticket_view(
                &t.engine,
                &self.topics.inputs[t.topic],
                t.partition,
                tenant,
                ticket_id,
            )
        })
    }

    pub(super) fn reload(&mut self, set: Arc<PolicySet>) {
        for t in self.inputs.values_mut() {
            t.engine.set_policy(set.clone());
        }
        for s in self.surges.values_mut() {
            s.detector = crate::core::surge::SurgeDetector::from_state(
                set.surge.clone(),
                s.detector.state().clone(),
            );
        }
        register_policy(&set);
        self.meters.forget_labelled();
        tracing::info!(
            version = format!("{:016x}", set.version),
            "policy reloaded; tickets opened from now on use it"
        );
        self.policy = set;
    }

    pub(super) fn publish_metrics(&mut self) {
        self.last_metrics = Instant::now();
        let now = self.clock.now();
        let scan_clocks = self.last_clock_scan.elapsed() >= Duration::from_secs(10);
        if scan_clocks {
            self.last_clock_scan = Instant::now();
        }
        for t in self.inputs.values_mut() {
            let p = t.partition;
            telemetry::set_open_tickets(p, t.engine.open_tickets() as u64);
            telemetry::set_preopen_buffered(p, t.engine.preopen_tickets() as u64);
            if t.engine.watermark() != Ts::MIN {
                telemetry::set_watermark_delay(p, now.since(t.engine.watermark()).as_secs_f64());
            }
            telemetry::set_consumer_lag(p, t.lag.unwrap_or(0));
            if scan_clocks {
                telemetry::set_running_clocks(p, t.engine.running_clocks() as u64);
            }
            let s = t.engine.stats().clone();
            let d = |a: u64, b: u64| a.saturating_sub(b);
            for _ in 0..d(s.duplicates, t.stats_seen.duplicates) {
                telemetry::event_duplicate();
            }
            for _ in 0..d(s.late, t.stats_seen.late).min(1_000_000) {
                telemetry::event_late();
            }
            for _ in 0..d(s.second_opened, t.stats_seen.second_opened) {
                telemetry::second_opened_ignored();
            }
            t.stats_seen = s;
        }
        let (mut by_channel, mut by_category) = (0, 0);
        for s in self.surges.values() {
            let (ch, cat) = s.detector.active_by_dimension();
            by_channel += ch;
            by_category += cat;
        }
        let (by_channel, by_category) =
            (self.control).report_surges(self.thread, by_channel as u64, by_category as u64);
        telemetry::set_surges_active(telemetry::SurgeDimension::Channel, by_channel);
        telemetry::set_surges_active(telemetry::SurgeDimension::Category, by_category);
    }
}
