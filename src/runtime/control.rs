//! What the processing thread shares with the rest of the process: shutdown and policy
//! reload requests going in, readiness and liveness coming out, and ticket queries for the
//! admin API.
//!
//! Ticket queries are answered by the processing thread itself (a request/response channel
//! drained after every poll) rather than from a concurrently-updated `DashMap` of views:
//! the engine state is already in memory once, a second per-ticket copy would double the
//! memory of a million open tickets and cost a view rebuild per changed ticket on the hot
//! path, while a query waits at most one poll interval (≤ 50 ms) and sees exactly the state
//! the engine acts on.
use crate::core::policy::PolicySet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// A read-only question for the processing thread.
pub struct TicketQuery {
    pub ticket_id: String,
    pub reply: tokio::sync::oneshot::Sender<Option<serde_json::Value>>,
}

/// Shared state between the processing thread and its owners.
pub struct Control {
    shutdown: AtomicBool,
    reload: Mutex<Option<Arc<PolicySet>>>,
    queries_tx: Mutex<mpsc::Sender<TicketQuery>>,
    queries_rx: Mutex<Option<mpsc::Receiver<TicketQuery>>>,
    /// Every assigned partition restored (and the group joined).
    pub ready: AtomicBool,
    /// The processing thread runs.
    pub alive: AtomicBool,
    /// Input partitions assigned.
    pub assigned_partitions: AtomicUsize,
    /// Repartition-topic partitions assigned (the surge stage).
    pub assigned_surge_partitions: AtomicUsize,
    pub restoring_partitions: AtomicUsize,
    pub transactions_committed: AtomicU64,
    pub records_consumed: AtomicU64,
    pub outputs_produced: AtomicU64,
    pub dead_letters_produced: AtomicU64,
    /// Restores finished, and their total duration in microseconds (for reports).
    pub restores: AtomicU64,
    pub restore_micros: AtomicU64,
    pub restored_tickets: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Control {
    pub fn new() -> Arc<Control> {
        let (tx, rx) = mpsc::channel();
        Arc::new(Control {
            shutdown: AtomicBool::new(false),
            reload: Mutex::new(None),
            queries_tx: Mutex::new(tx),
            queries_rx: Mutex::new(Some(rx)),
            ready: AtomicBool::new(false),
            alive: AtomicBool::new(false),
            assigned_partitions: AtomicUsize::new(0),
            assigned_surge_partitions: AtomicUsize::new(0),
            restoring_partitions: AtomicUsize::new(0),
            transactions_committed: AtomicU64::new(0),
            records_consumed: AtomicU64::new(0),
            outputs_produced: AtomicU64::new(0),
            dead_letters_produced: AtomicU64::new(0),
            restores: AtomicU64::new(0),
            restore_micros: AtomicU64::new(0),
            restored_tickets: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// Asks the processing thread to stop (commit, leave the group).
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Hands a validated policy set to the processing thread (applied at its next loop).
    pub fn reload_policy(&self, set: Arc<PolicySet>) {
        *self.reload.lock().unwrap() = Some(set);
    }
    pub(crate) fn take_reload(&self) -> Option<Arc<PolicySet>> {
        self.reload.lock().unwrap().take()
    }

    /// Sends a ticket query; `None` when the processing thread is gone.
    pub fn query_ticket(
        &self,
        ticket_id: String,
    ) -> Option<tokio::sync::oneshot::Receiver<Option<serde_json::Value>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.queries_tx
            .lock()
            .unwrap()
            .send(TicketQuery { ticket_id, reply })
            .ok()?;
        Some(rx)
    }
    pub(crate) fn take_query_receiver(&self) -> Option<mpsc::Receiver<TicketQuery>> {
        self.queries_rx.lock().unwrap().take()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn set_error(&self, e: String) {
        *self.last_error.lock().unwrap() = Some(e);
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }
}
