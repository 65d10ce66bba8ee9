//! rust-rdkafka's drop of a group consumer always closes it, and logs at ERROR when the
//! close fails. [`super::clients::QuickClose`] has closed it already (in 2 ms polls instead
//! of the drop's 100 ms ones), so librdkafka answers that second close with `__DESTROY`
//! ("Consumer already closed") and every restore logged two false errors. This layer drops
//! exactly that line; any other close failure is still logged.
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The module whose drop logs the line (rust-rdkafka logs through the `log` crate, so a
/// bridged record carries it in the `log.target` field).
const TARGET: &str = "rdkafka::consumer::base_consumer";

/// Whether `message` of `target` is the drop's report of a close that had already happened.
pub fn is_close_echo(target: &str, message: &str) -> bool {
    target == TARGET
        && message.starts_with("Failed to close consumer queue on drop")
        && message.contains("BrokerDestroy")
}

/// A layer that disables the echo for every layer of the subscriber.
#[derive(Clone, Copy, Debug, Default)]
pub struct CloseEchoFilter;

impl<S: Subscriber> Layer<S> for CloseEchoFilter {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR {
            return true;
        }
        let mut fields = EchoFields::default();
        event.record(&mut fields);
        let target = fields.log_target.as_deref().unwrap_or(meta.target());
        !is_close_echo(target, &fields.message)
    }
}

/// The two fields the filter reads.
#[derive(Default)]
struct EchoFields {
    message: String,
    log_target: Option<String>,
}

impl Visit for EchoFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "log.target" => self.log_target = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    const ECHO: &str = "Failed to close consumer queue on drop: Consumer queue close error: BrokerDestroy (Local: Broker handle destroyed for termination)";

    #[test]
    fn only_the_already_closed_report_of_the_drop_is_an_echo() {
        assert!(is_close_echo(TARGET, ECHO));
        let other = "Failed to close consumer queue on drop: Consumer queue close error: Fail (Local: Communication failure with broker)";
        assert!(!is_close_echo(TARGET, other), "a real close failure");
        assert!(!is_close_echo("rdkafka::producer", ECHO), "another module");
    }

    /// Counts the events that reach the layers below the filter.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);
    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut f = EchoFields::default();
            event.record(&mut f);
            self.0.lock().unwrap().push(f.message);
        }
    }

    #[test]
    fn the_echo_reaches_no_layer_and_everything_else_does() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(CloseEchoFilter)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "rdkafka::consumer::base_consumer", "{ECHO}");
            tracing::warn!(target: "rdkafka::consumer::base_consumer", "{ECHO}");
            tracing::error!(target: "rdkafka::consumer::base_consumer", "Failed to close consumer queue on drop: Consumer queue close error: Fail");
            tracing::error!(target: "rdkafka::consumer::base_consumer", { log.target = "other" }, "{}", ECHO);
        });
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[1].ends_with("Fail") && seen[0] == ECHO && seen[2] == ECHO);
    }
}
