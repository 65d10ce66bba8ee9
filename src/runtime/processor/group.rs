//! The consumer groups: the input stage's and the surge stage's consumers, and their
//! contexts, whose rebalance callbacks run inside `poll` on the processing thread and take
//! the processor's lock (never held across `poll`).
use super::*;
/// Which stage a consumer feeds (its group).
pub(super) use crate::runtime::partitions::Role;

/// Both consumers, subscribed, and handed to the processor.
pub(super) fn new_consumers(
    cfg: &Config,
    topics: &Topics,
    processor: &Arc<Mutex<Processor>>,
    trouble: &Arc<Trouble>,
    auth: &AuthFailure,
) -> Result<Clients, ProcessorError> {
    let ctx = |role| ConsumerCtx {
        processor: processor.clone(),
        role,
        trouble: trouble.clone(),
        auth: auth.clone(),
    };
    let main: Arc<Consumer> = Arc::new(
        consumer_config(cfg, &topics.group_id)
            .create_with_context(ctx(Role::Input))
            .map_err(kerr("creating the consumer"))?,
    );
    let surge: Arc<Consumer> = Arc::new(
        consumer_config(cfg, &topics.surge_group_id)
            .create_with_context(ctx(Role::Surge))
            .map_err(kerr("creating the surge consumer"))?,
    );
    let subscribed: Vec<&str> = topics.inputs.iter().map(|s| s.as_str()).collect();
    main.subscribe(&subscribed).map_err(kerr("subscribing"))?;
    surge
        .subscribe(&[&topics.repartition])
        .map_err(kerr("subscribing to the repartition topic"))?;
    lock(processor).consumers = Some(Consumers {
        main: main.clone(),
        surge: surge.clone(),
    });
    Ok((main, surge))
}

pub(super) struct ConsumerCtx {
    processor: Arc<Mutex<Processor>>,
    pub(super) role: Role,
    auth: AuthFailure,
    trouble: Arc<Trouble>,
}

#[derive(Clone)]
pub(super) struct Consumers {
    pub(super) main: Arc<Consumer>,
    pub(super) surge: Arc<Consumer>,
}

impl ClientContext for ConsumerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.trouble.note(&error);
        if !self.auth.record(&error, reason) {
            let client = match self.role {
                Role::Input => "consumer",
                Role::Surge => "surge consumer",
            };
            crate::runtime::kafka::client_log::client_error(client, &error, reason);
        }
    }
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::runtime::kafka::client_log::client_log(level, fac, message);
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                if lost {
                    self.trouble.mark();
                }
                lock(&self.processor).on_revoke(consumer, self.role, tpl, lost);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Assign(_) => {}
        }
    }
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => lock(&self.processor).on_assign(consumer, tpl),
            Rebalance::Revoke(_) => lock(&self.processor).update_assigned(),
            Rebalance::Error(_) => {}
        }
    }
}

pub(super) type Consumer = BaseConsumer<ConsumerCtx>;
/// The input stage's consumer and the surge stage's.
pub(super) type Clients = (Arc<Consumer>, Arc<Consumer>);
