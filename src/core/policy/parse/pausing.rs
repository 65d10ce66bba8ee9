//! Clock fields of the amended contract (docs/sla-semantics.md §1): `paused_in`, the phases that
//! pause a clock, and `metric`, the latency distribution a clock's stops feed.
use super::{suggest, Cx, Tbl, Val};
use crate::core::policy::compiled::{LatencyMetric, MatcherSet, PhaseSet, LATENCY_METRICS};

impl Cx<'_> {
    /// `paused_in`: a phase or a list of `open`, `waiting`, `on_hold`, `resolved`.
    pub(super) fn paused_in(&mut self, v: &Val) -> Option<PhaseSet> {
        let names = self.strings(v, "paused_in")?;
        self.phase_set(
            names,
            "\"closed\" cannot pause a clock: closing cancels every clock but survivors",
            "paused_in lists open, waiting, on_hold or resolved",
        )
    }

    /// `metric`: one of the latency histograms of rule 12.
    pub(super) fn metric(&mut self, v: &Val) -> Option<LatencyMetric> {
        let name = self.string(v, "metric")?;
        match LatencyMetric::parse(name) {
            Some(m) => Some(m),
            None => {
                let hint = suggest(
                    name,
                    LATENCY_METRICS.iter().map(|(_, n)| *n),
                    "metric is one of",
                );
                self.err(v.span(), format!("unknown metric \"{name}\""), Some(hint));
                None
            }
        }
    }

    /// A clock pauses either by phase (`paused_in`) or by events (`pause` / `resume`), not
    /// both: two sources of one paused state would make "paused" depend on which came last.
    pub(super) fn clock_pausing(
        &mut self,
        t: &Tbl,
        label: &str,
        paused_in: PhaseSet,
        pause: MatcherSet,
        resume: MatcherSet,
    ) -> bool {
        if paused_in.is_empty() || (pause.is_empty() && resume.is_empty()) {
            return true;
        }
        let span = t.key_span("paused_in").unwrap_or(t.span.clone());
        self.err(
            span,
            format!("clock \"{label}\" has both \"paused_in\" and \"pause\"/\"resume\""),
            Some(
                "use paused_in = [\"waiting\", \"on_hold\"] alone: it pauses while the ticket is in those phases"
                    .into(),
            ),
        );
        false
    }
}
