//! Synthetic customer-support traffic for the demo: tickets arrive as a Poisson process
//! over tenants, channels, categories, urgencies and tiers; each ticket's life (auto-reply,
//! agent replies with a heavy-tailed delay, customer follow-ups, ETA and progress updates,
//! hand-offs, waiting on the customer, resolution, feedback, reopen, close) is scheduled at
//! its opening; planted surges multiply one tenant's chat arrivals for a while.
//! Deterministic for a seed.
use crate::core::model::{
    Audience, Body, Category, Channel, Event, ReplyKind, Role, Tier, Urgency,
};
use crate::core::time::{Dur, Ts};
use compact_str::{format_compact, CompactString};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// splitmix64: tiny, fast, good enough for traffic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }
    /// Log-normal with the given median and shape σ.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u1, u2) = (1.0 - self.f64(), self.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median * (sigma * z).exp()
    }
    pub fn pick<'a, T>(&mut self, weighted: &'a [(T, f64)]) -> &'a T {
        let total: f64 = weighted.iter().map(|(_, w)| w).sum();
        let mut x = self.f64() * total;
        for (v, w) in weighted {
            if x < *w {
                return v;
            }
            x -= w;
        }
        &weighted[weighted.len() - 1].0
    }
}

/// Traffic shape.
#[derive(Clone, Debug)]
pub struct TrafficOptions {
    pub tickets_per_min: f64,
    pub seed: u64,
    /// Surges: (start offset from the origin, length, tenant, multiplier) on chat.
    pub surges: Vec<(Dur, Dur, &'static str, f64)>,
    /// Prefix of ticket ids (so several runs never collide).
    pub id_prefix: String,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            tickets_per_min: 15.0,
            seed: 7,
            surges: vec![(
                Dur::from_secs(70 * 60),
                Dur::from_secs(12 * 60),
                "globex",
                8.0,
            )],
            id_prefix: "T".into(),
        }
    }
}

const TENANTS: &[(&str, f64)] = &[
    ("acme", 0.4),
    ("globex", 0.25),
    ("initech", 0.2),
    ("umbrella", 0.15),
];
const CHANNELS: &[(Channel, f64)] = &[
    (Channel::Chat, 0.45),
    (Channel::Email, 0.25),
    (Channel::Phone, 0.1),
    (Channel::Web, 0.1),
    (Channel::Social, 0.1),
];
const CATEGORIES: &[(Category, f64)] = &[
    (Category::Inquiry, 0.5),
    (Category::AfterSales, 0.2),
    (Category::Technical, 0.15),
    (Category::Complaint, 0.1),
    (Category::Suggestion, 0.05),
];
const URGENCIES: &[(Urgency, f64)] = &[
    (Urgency::General, 0.8),
    (Urgency::Important, 0.12),
    (Urgency::Urgent, 0.08),
];

/// The generator: call [`Traffic::until`] with the advancing clock.
pub struct Traffic {
    opts: TrafficOptions,
    rng: Rng,
    origin: Ts,
    next_arrival: Ts,
    next_ticket: u64,
    queue: BinaryHeap<Reverse<(Ts, u64)>>,
    events: std::collections::HashMap<u64, Event>,
    seq: u64,
    pub tickets_opened: u64,
}

impl Traffic {
    pub fn new(origin: Ts, opts: TrafficOptions) -> Traffic {
        let rng = Rng::new(opts.seed);
        Traffic {
            opts,
            rng,
            origin,
            next_arrival: origin,
            next_ticket: 0,
            queue: BinaryHeap::new(),
            events: Default::default(),
            seq: 0,
            tickets_opened: 0,
        }
    }

    fn rate_at(&self, t: Ts, tenant: &str) -> f64 {
        let mut m = 1.0;
        for (start, len, who, mult) in &self.opts.surges {
            let s = self.origin.saturating_add(*start);
            if *who == tenant && t >= s && t < s.saturating_add(*len) {
                m *= mult;
            }
        }
        m
    }

    /// Every event with `occurred_at ≤ until`, in occurred_at order.
    pub fn until(&mut self, until: Ts, out: &mut Vec<Event>) {
        // Arrivals: a Poisson process at the base rate, thinned per tenant by the surge
        // multiplier (extra arrivals of a surging tenant are added on chat).
        let mean_gap = 60.0 / self.opts.tickets_per_min;
        while self.next_arrival <= until {
            let t = self.next_arrival;
            let tenant = *self.rng.pick(TENANTS);
            self.open_ticket(t, tenant, None);
            for &(_, _, who, mult) in &self.opts.surges.clone() {
                let m = self.rate_at(t, who);
                if m > 1.0 {
                    // (mult − 1) extra chat tickets per base arrival share of that tenant.
                    let share = TENANTS.iter().find(|(n, _)| *n == who).map_or(0.0, |x| x.1);
                    let mut extra = (mult - 1.0) * share;
                    while extra > 0.0 {
                        if self.rng.chance(extra.min(1.0)) {
                            let dt = Dur((self.rng.f64() * mean_gap * 1e9) as i64);
                            self.open_ticket(t.saturating_add(dt), who, Some(Channel::Chat));
                        }
                        extra -= 1.0;
                    }
                }
            }
            let gap = self.rng.exp(mean_gap);
            self.next_arrival = t.saturating_add(Dur((gap * 1e9) as i64).max(Dur(1)));
        }
        while let Some(Reverse((t, id))) = self.queue.peek().copied() {
            if t > until {
                break;
            }
            self.queue.pop();
            if let Some(ev) = self.events.remove(&id) {
                out.push(ev);
            }
        }
    }

    fn push(&mut self, ticket: &CompactString, tenant: &str, at: Ts, body: Body, n: &mut u32) {
        *n += 1;
        self.seq += 1;
        let ev = Event {
            event_id: format_compact!("{ticket}-{n}"),
            ticket_id: ticket.clone(),
            occurred_at: at,
            tenant: tenant.into(),
            body,
        };
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn secs(&mut self, median: f64, sigma: f64) -> Dur {
        Dur((self.rng.lognormal(median, sigma).clamp(1.0, 7.0 * 86_400.0) * 1e9) as i64)
    }

    /// Schedules one ticket's whole life.
    fn open_ticket(&mut self, t0: Ts, tenant: &str, channel: Option<Channel>) {
        self.next_ticket += 1;
        self.tickets_opened += 1;
        let id: CompactString = format_compact!("{}{}", self.opts.id_prefix, self.next_ticket);
        let channel = channel.unwrap_or(*self.rng.pick(CHANNELS));
        let category = *self.rng.pick(CATEGORIES);
        let urgency = *self.rng.pick(URGENCIES);
        let tier = if self.rng.chance(0.1) {
            Tier::Vip
        } else {
            Tier::Standard
        };
        let mut n = 0u32;
        let r = &mut n;
        self.push(
            &id,
            tenant,
            t0,
            Body::Opened {
                channel,
                category,
                urgency,
                tier,
                team: "support".into(),
            },
            r,
        );
        let mut t = t0;
        if channel == Channel::Chat && self.rng.chance(0.6) {
            self.push(
                &id,
                tenant,
                t0.saturating_add(Dur::from_secs(1)),
                Body::AutoReply,
                r,
            );
        }
        if self.rng.chance(0.3) {
            self.push(
                &id,
                tenant,
                t0.saturating_add(Dur::from_secs(3)),
                Body::Assigned,
                r,
            );
            if self.rng.chance(0.05) {
                // Misrouted within seconds (sometimes too late: R25).
                let d = self.secs(8.0, 0.5);
                self.push(
                    &id,
                    tenant,
                    t0.saturating_add(Dur::from_secs(3)).saturating_add(d),
                    Body::Transferred { misrouted: true },
                    r,
                );
            }
        }
        if urgency == Urgency::Urgent && self.rng.chance(0.5) {
            let d = self.secs(240.0, 0.6);
            self.push(
                &id,
                tenant,
                t0.saturating_add(d),
                Body::EscalationAnswered(Role::DepartmentHead),
                r,
            );
        }
        if urgency == Urgency::Important && self.rng.chance(0.7) {
            let d = self.secs(600.0, 0.5);
            self.push(
                &id,
                tenant,
                t0.saturating_add(d),
                Body::Escalated(Role::Supervisor),
                r,
            );
        }
        // First response: median by channel, with a heavy tail that breaches.
        let median = match channel {
            Channel::Chat => 25.0,
            Channel::Phone => 45.0,
            _ => 150.0,
        };
        let mut first = self.secs(median, 0.6);
        if self.rng.chance(0.12) {
            first = Dur((first.0 as f64 * (3.0 + 7.0 * self.rng.f64())) as i64);
        }
        t = t.saturating_add(first);
        let kind = if self.rng.chance(0.35) {
            ReplyKind::Eta
        } else {
            ReplyKind::Answer
        };
        let reply = |kind| Body::AgentMessage {
            kind,
            audience: Audience::Customer,
        };
        self.push(&id, tenant, t, reply(kind), r);
        if self.rng.chance(0.03) {
            self.push(
                &id,
                tenant,
                t.saturating_add(Dur::from_secs(30)),
                Body::UrgencyChanged(Urgency::Urgent),
                r,
            );
        }
        // A few exchanges.
        let exchanges = (self.rng.f64() * 3.0) as u32;
        for _ in 0..exchanges {
            let d = self.secs(90.0, 0.8);
            t = t.saturating_add(d);
            self.push(&id, tenant, t, Body::CustomerMessage, r);
            let mut d = self.secs(
                if channel == Channel::Chat {
                    50.0
                } else {
                    240.0
                },
                0.7,
            );
            if self.rng.chance(0.08) {
                d = Dur(d.0 * 6);
            }
            t = t.saturating_add(d);
            let k = if self.rng.chance(0.2) {
                ReplyKind::Progress
            } else {
                ReplyKind::Answer
            };
            self.push(&id, tenant, t, reply(k), r);
        }
        if self.rng.chance(0.1) {
            let d = self.secs(120.0, 0.5);
            t = t.saturating_add(d);
            self.push(&id, tenant, t, Body::WaitingOnCustomer, r);
            let d = self.secs(900.0, 0.7);
            t = t.saturating_add(d);
            self.push(&id, tenant, t, Body::CustomerMessage, r);
        }
        // Resolution: most tickets are solved; a few never are (they breach resolution).
        if self.rng.chance(0.93) {
            let d = self.secs(
                if channel == Channel::Chat {
                    300.0
                } else {
                    1800.0
                },
                0.8,
            );
            t = t.saturating_add(d);
            self.push(&id, tenant, t, reply(ReplyKind::Solution), r);
            t = t.saturating_add(Dur::from_secs(5));
            self.push(&id, tenant, t, Body::Resolved, r);
            if self.rng.chance(0.3) {
                let d = self.secs(120.0, 0.5);
                t = t.saturating_add(d);
                let satisfied = !self.rng.chance(0.15);
                self.push(
                    &id,
                    tenant,
                    t,
                    Body::Feedback {
                        satisfied: Some(satisfied),
                    },
                    r,
                );
                if !satisfied {
                    let d = self.secs(400.0, 0.6);
                    t = t.saturating_add(d);
                    self.push(&id, tenant, t, reply(ReplyKind::Solution), r);
                    self.push(
                        &id,
                        tenant,
                        t.saturating_add(Dur::from_secs(2)),
                        Body::Resolved,
                        r,
                    );
                    t = t.saturating_add(Dur::from_secs(2));
                }
            }
            if (category == Category::Complaint || tier == Tier::Vip) && self.rng.chance(0.6) {
                let d = self.secs(3.0 * 3600.0, 0.5);
                self.push(&id, tenant, t.saturating_add(d), Body::FollowUpDone, r);
            }
            let d = self.secs(60.0, 0.3);
            self.push(&id, tenant, t.saturating_add(d), Body::Closed, r);
        }
    }

    /// Events scheduled but not yet returned.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_ordered_and_plausible() {
        let origin = Ts::from_secs(1_700_000_000);
        let mut a = Traffic::new(origin, TrafficOptions::default());
        let mut b = Traffic::new(origin, TrafficOptions::default());
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        let end = origin.saturating_add(Dur::from_secs(3 * 3600));
        a.until(end, &mut ea);
        b.until(end, &mut eb);
        assert_eq!(ea, eb);
        assert!(ea.windows(2).all(|w| w[0].occurred_at <= w[1].occurred_at));
        // ~15 a minute for 3 h, plus the planted surge.
        assert!(
            a.tickets_opened > 2000 && a.tickets_opened < 4000,
            "{}",
            a.tickets_opened
        );
        let ids: std::collections::HashSet<_> =
            ea.iter().map(|e| (&e.ticket_id, &e.event_id)).collect();
        assert_eq!(ids.len(), ea.len(), "event ids are unique");
    }
}
