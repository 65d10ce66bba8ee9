//! Why producing, a commit or an abort failed, as a type, and what the processor does about
//! it ([`Recovery`]) decided from the type — never from an error's text.
use rdkafka::error::{KafkaError, RDKafkaError};
use std::time::Duration;

/// A producer-side or commit-path operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOp {
    BeginTransaction,
    SendOffsetsToTransaction,
    CommitTransaction,
    AbortTransaction,
    /// Offsets committed by the consumer (at-least-once).
    CommitOffsets,
}

impl TxnOp {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnOp::BeginTransaction => "begin_transaction",
            TxnOp::SendOffsetsToTransaction => "send_offsets_to_transaction",
            TxnOp::CommitTransaction => "commit_transaction",
            TxnOp::AbortTransaction => "abort_transaction",
            TxnOp::CommitOffsets => "committing offsets",
        }
    }
}

impl std::fmt::Display for TxnOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TxnError {
    #[error("{op}: {source}")]
    Op {
        op: TxnOp,
        #[source]
        source: KafkaError,
    },
    /// `send` refused a record (not for a full queue: that is waited out).
    #[error("producing to {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    /// A delivery report said a record was not written.
    #[error("delivery to {topic} failed: {source}")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("{count} records still undelivered after {waited:?}")]
    Undelivered { count: i32, waited: Duration },
    #[error("no consumer group metadata")]
    NoGroupMetadata,
}

/// What the processor does about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Abort (exactly-once) and restore every partition from the state topics: memory may
    /// hold what Kafka does not.
    Reset,
    /// The producer cannot go on (fenced by a newer replica with the same transactional id,
    /// or librdkafka's fatal state): stop, or recreate the clients after an outage.
    Fatal,
}

impl TxnError {
    pub fn op(op: TxnOp) -> impl FnOnce(KafkaError) -> TxnError {
        move |source| TxnError::Op { op, source }
    }

    /// Fatal when librdkafka says the transactional producer is in a fatal state; every
    /// other failure is cured by aborting and restoring.
    pub fn recovery(&self) -> Recovery {
        match self {
            TxnError::Op { source, .. } if is_fatal(source) => Recovery::Fatal,
            _ => Recovery::Reset,
        }
    }

    /// Whether retrying the same operation may succeed (librdkafka's retriable flag).
    pub fn is_retriable(&self) -> bool {
        match self {
            TxnError::Op {
                source: KafkaError::Transaction(e),
                ..
            } => e.is_retriable(),
            _ => false,
        }
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(re) if RDKafkaError::is_fatal(re))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn only_a_fatal_transactional_error_is_fatal() {
        let send = TxnError::Produce {
            topic: "out".into(),
            source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        };
        assert_eq!(send.recovery(), Recovery::Reset);
        assert!(!send.is_retriable());
        assert!(send.to_string().starts_with("producing to out: "), "{send}");
        let commit = TxnError::op(TxnOp::CommitTransaction)(KafkaError::Canceled);
        assert_eq!(commit.recovery(), Recovery::Reset);
        assert!(commit.to_string().starts_with("commit_transaction: "));
        assert_eq!(
            TxnError::Undelivered {
                count: 3,
                waited: Duration::from_secs(30)
            }
            .recovery(),
            Recovery::Reset
        );
        assert_eq!(TxnError::NoGroupMetadata.recovery(), Recovery::Reset);
    }
}
