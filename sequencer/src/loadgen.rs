//! A load generator speaking the client protocol over Aeron: sends a seeded order flow to the
//! leader's ingress and measures the commit round trip (send → Committed response) in an
//! HdrHistogram.
//!
//! Open loop (`rate > 0`): command `i` is due at `start + i / rate`, and its latency is measured from
//! that intended time, not from when it was actually sent, so a stalled system shows as latency
//! instead of hiding it (no coordinated omission). Closed loop (`rate == 0`): at most `in_flight_max`
//! commands outstanding, latency from the actual send. Either way the number of unanswered commands
//! is bounded by `in_flight_max` (time spent blocked on that bound is reported), unanswered commands
//! are resent after `resend_after`, and responses to resends are counted, never double-recorded.
//!
//! Failover: the generator announces itself to every member, sends to the one it believes leads,
//! and moves when a node says "not leader" (following its hint), when a new leader announces
//! itself, or when nothing is answered for `leader_timeout` (it then tries the next member). It
//! resends every unanswered command to the new leader in order; client sequence numbers make that
//! safe (the cluster sequences each at most once). Gaps in the answers longer than
//! `gap_threshold` are recorded with wall-clock times, so a harness that kills a leader can
//! measure how long the cluster took to commit again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use matcher::{Command, CommandRecord};
use rusteron_client::Aeron;

use crate::client::{
    leader_news, Client, REASON_SEQUENCE_GAP, RESPONSE_COMMITTED, RESPONSE_NEW_LEADER,
};
use crate::transport::TransportError;
use crate::workload::{add_instrument, Workload};

/// What to send and how fast.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Every member's client ingress endpoint, by node id.
    pub ingress: Vec<String>,
    /// The member tried first.
    pub leader: usize,
    /// Where responses come back (UDP `ip:port` of this process).
    pub response_endpoint: String,
    /// The client id; must not have been used against this cluster before (its sequence numbers
    /// start at 1 and duplicates are discarded).
    pub client_id: u64,
    /// Offered rate in commands per second; 0 runs closed loop.
    pub rate: u64,
    /// Most unanswered commands.
    pub in_flight_max: usize,
    /// Commands sent before measuring starts.
    pub warmup: u64,
    /// Commands measured.
    pub commands: u64,
    pub seed: u64,
    pub accounts: u32,
    /// Unanswered commands are sent again after this long.
    pub resend_after: Duration,
    /// Gives up when no answer arrived for this long.
    pub stall_timeout: Duration,
    /// With commands unanswered and no answer for this long, try the next member.
    pub leader_timeout: Duration,
    /// Answer gaps longer than this are recorded in the report.
    pub gap_threshold: Duration,
}

impl LoadConfig {
    pub fn new(leader_ingress: &str, response_endpoint: &str, client_id: u64) -> Self {
        LoadConfig {
            ingress: vec![leader_ingress.to_string()],
            leader: 0,
            response_endpoint: response_endpoint.to_string(),
            client_id,
            rate: 0,
            in_flight_max: 4096,
            warmup: 0,
            commands: 100_000,
            seed: 1,
            accounts: 100,
            resend_after: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(20),
            leader_timeout: Duration::from_millis(300),
            gap_threshold: Duration::from_millis(50),
        }
    }
}

/// Most answer gaps a report keeps.
pub const GAPS_MAX: usize = 4096;

/// A client id not used before against a cluster (the time in nanoseconds mixed with the process
/// id; odd, so never 0): the cluster discards client sequence numbers it has seen, so a new run
/// needs a new id.
pub fn fresh_client_id() -> u64 {
    let nanos = crate::clock::unix_now_ns();
    (nanos ^ (u64::from(std::process::id()) << 40)) | 1
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Commit round trips of the measured commands, in nanoseconds.
    pub histogram: Histogram<u64>,
    pub sent: u64,
    pub committed: u64,
    pub rejected: u64,
    pub resends: u64,
    /// The first few client sequence numbers resent (for diagnosis).
    pub resent_sequences: Vec<u64>,
    /// Rejects saying an earlier command went missing (each triggers an in-order resend).
    pub gap_rejects: u64,
    /// Answers to commands already answered (a resend crossing its original answer).
    pub repeated_answers: u64,
    /// Time the sender waited because `in_flight_max` commands were unanswered.
    pub blocked: Duration,
    /// Offers refused by Aeron back-pressure (retried).
    pub back_pressured: u64,
    /// From the first measured command's intended send time to the last answer.
    pub elapsed: Duration,
    /// Times the generator moved to another member (hint, announcement or silence).
    pub leader_changes: u64,
    /// "Not leader" rejects received (each makes the command go to the leader instead).
    pub not_leader_rejects: u64,
    /// (last answer before, first answer after) in Unix nanoseconds, for every gap in the answers
    /// longer than `gap_threshold` while commands were outstanding; at most [`GAPS_MAX`].
    pub gaps_unix_ns: Vec<(u64, u64)>,
    /// The client id the run used (to find its commands in a journal).
    pub client_id: u64,
    /// The last client sequence sent (the run sent 1..=this).
    pub client_sequence_last: u64,
}

impl LoadReport {
    /// Measured commands committed per second.
    pub fn throughput(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    #[error("the leader's ingress at {0} did not connect within {1:?}")]
    NotConnected(String, Duration),
    #[error("no answer for {timeout:?}: {answered} of {sent} commands answered")]
    Stalled {
        timeout: Duration,
        sent: u64,
        answered: u64,
    },
    #[error("stopped")]
    Stopped,
}

#[derive(Clone, Copy)]
struct Slot {
    sequence: u64,
    intended_ns: u64,
    sent_ns: u64,
    answered: bool,
    /// The account of a new order (a cancel target once accepted), or 0.
    account: u32,
    command: CommandRecord,
}

/// Runs the load against the cluster; `on_progress(sent, answered)` is called about once a second.
/// `invoke` is called in every cycle: the duty cycle of a media driver this thread runs itself
/// (see [`crate::driver::EmbeddedDriver::launch_invoked`]), or nothing.
pub fn run(
    aeron: &Aeron,
    config: &LoadConfig,
    stop: &AtomicBool,
    invoke: &dyn Fn(),
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<LoadReport, LoadError> {
    crate::runtime::precise_sleeps();
    let mut client = Client::connect_cluster(
        aeron,
        config.client_id,
        &config.ingress,
        config.leader,
        &config.response_endpoint,
        invoke,
    )?;
    // Once the ingress is connected: Connect, then command 1, which creates the instrument
    // (answered Committed even when it exists already: the matcher rejects it, the command is
    // still committed). Both are repeated until command 1 is committed, which also proves the
    // leader opened our response channel; "not leader" answers and announcements move us.
    let connect_timeout = Duration::from_secs(20);
    let deadline = Instant::now() + connect_timeout;
    let instrument = add_instrument();
    let mut committed_first = false;
    let mut last_send = None::<Instant>;
    let mut leader_term = 0u64;
    while !committed_first {
        if Instant::now() > deadline {
            return Err(LoadError::NotConnected(
                config.ingress[client.target()].clone(),
                connect_timeout,
            ));
        }
        if stop.load(Ordering::Acquire) {
            return Err(LoadError::Stopped);
        }
        if last_send.is_none_or(|t| t.elapsed() > Duration::from_millis(100)) {
            if client.is_connected() && client.hello() {
                client.send(1, instrument.as_bytes());
                last_send = Some(Instant::now());
            } else if last_send.is_none_or(|t| t.elapsed() > config.leader_timeout) {
                // This member does not answer: try the next.
                client.set_target((client.target() + 1) % client.members());
                last_send = Some(Instant::now());
            }
        }
        let mut move_to = None;
        client.poll(|r| {
            if let Some(hint) = leader_news(&r, &mut leader_term) {
                move_to = hint.or(move_to);
            } else if r.kind == RESPONSE_COMMITTED && r.client_sequence == 1 {
                committed_first = true;
            }
        })?;
        if let Some(target) = move_to.filter(|&t| t < client.members()) {
            client.set_target(target);
            last_send = None;
        }
        invoke();
        std::thread::sleep(Duration::from_micros(200));
    }

    let capacity = config.in_flight_max.max(1).next_power_of_two();
    let mask = capacity as u64 - 1;
    let empty = Slot {
        sequence: 0,
        intended_ns: 0,
        sent_ns: 0,
        answered: true,
        account: 0,
        command: instrument,
    };
    let mut ring = vec![empty; capacity];
    let mut workload = Workload::new(config.seed, config.accounts);
    // Client sequence 1 was the instrument; measured ones follow the warm-up.
    let first = 2u64;
    // `stop` ends the run gracefully: nothing new is sent, what is outstanding is answered.
    let mut last = first + config.warmup + config.commands - 1;
    let first_measured = first + config.warmup;
    let interval_ns = if config.rate > 0 {
        1_000_000_000f64 / config.rate as f64
    } else {
        0.0
    };
    let base = Instant::now();
    let now_ns = || base.elapsed().as_nanos() as u64;
    let intended = |sequence: u64| ((sequence - first) as f64 * interval_ns) as u64;
    let mut report = LoadReport {
        histogram: Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3)
            .expect("valid bounds"),
        sent: 0,
        committed: 0,
        rejected: 0,
        resends: 0,
        resent_sequences: Vec::new(),
        gap_rejects: 0,
        repeated_answers: 0,
        blocked: Duration::ZERO,
        back_pressured: 0,
        elapsed: Duration::ZERO,
        leader_changes: 0,
        not_leader_rejects: 0,
        gaps_unix_ns: Vec::new(),
        client_id: config.client_id,
        client_sequence_last: 1,
    };
    let base_unix_ns = crate::clock::unix_now_ns();
    let mut last_hello = Instant::now();
    let mut last_move_ns = 0u64;
    let (mut next, mut oldest) = (first, first);
    let mut blocked_since = None::<u64>;
    let mut last_answer_ns = 0u64;
    let mut last_progress = Instant::now();
    let mut last_resend_scan = 0u64;
    let mut idle = 0u32;
    let mut first_measured_ns = None::<u64>;
    let mut pending = None::<CommandRecord>;
    let mut resend_from = None::<u64>;
    while oldest <= last {
        if stop.load(Ordering::Acquire) && last >= next {
            last = next - 1;
            pending = None;
            if oldest > last {
                break;
            }
        }
        invoke();
        let mut work = 0usize;
        let now = now_ns();
        // Send what is due.
        while next <= last && (config.rate == 0 || intended(next) <= now) {
            if next - oldest >= capacity as u64 {
                blocked_since.get_or_insert(now);
                break;
            }
            if let Some(since) = blocked_since.take() {
                report.blocked += Duration::from_nanos(now - since);
            }
            // Commands due together go out packed in one message.
            let command = pending.take().unwrap_or_else(|| workload.next_command());
            if !client.queue(next, command.as_bytes()) {
                // The batch is full: send it, then start the next one with this command.
                if !client.flush() {
                    report.back_pressured += 1;
                    pending = Some(command);
                    break;
                }
                client.queue(next, command.as_bytes());
            }
            let sent_ns = now_ns();
            ring[(next & mask) as usize] = Slot {
                sequence: next,
                intended_ns: if config.rate > 0 {
                    intended(next)
                } else {
                    sent_ns
                },
                sent_ns,
                answered: false,
                account: new_order_account(&command),
                command,
            };
            if next == first_measured {
                first_measured_ns = Some(ring[(next & mask) as usize].intended_ns);
            }
            report.sent += 1;
            report.client_sequence_last = next;
            next += 1;
            work += 1;
        }
        if client.has_queued() && !client.flush() {
            report.back_pressured += 1;
        }
        // Take answers.
        let mut move_to = None::<usize>;
        let polled = client.poll(|response| {
            if let Some(hint) = leader_news(&response, &mut leader_term) {
                // A "not leader" reject leaves the command unanswered: it goes to the leader the
                // node named (or, with no leader known, to the next member once the silence
                // lasts).
                if response.kind != RESPONSE_NEW_LEADER {
                    report.not_leader_rejects += 1;
                }
                move_to = hint.or(move_to);
                return;
            }
            if response.kind != RESPONSE_COMMITTED && response.reason == REASON_SEQUENCE_GAP {
                // An earlier command was lost on the way: resend from the one the leader expects
                // (once per resend interval, however many rejects say so).
                let expected = response.sequence;
                let slot = &ring[(expected & mask) as usize];
                if slot.sequence == expected && !slot.answered {
                    resend_from = Some(resend_from.map_or(expected, |r: u64| r.min(expected)));
                }
                report.gap_rejects += 1;
                return;
            }
            let slot = &mut ring[(response.client_sequence & mask) as usize];
            if slot.sequence != response.client_sequence || slot.answered {
                report.repeated_answers += 1;
                return;
            }
            slot.answered = true;
            let at = now_ns();
            if at.saturating_sub(last_answer_ns) > config.gap_threshold.as_nanos() as u64
                && last_answer_ns > 0
                && report.gaps_unix_ns.len() < GAPS_MAX
            {
                report
                    .gaps_unix_ns
                    .push((base_unix_ns + last_answer_ns, base_unix_ns + at));
            }
            last_answer_ns = at;
            if response.kind == RESPONSE_COMMITTED {
                report.committed += 1;
                if slot.account != 0 {
                    // The exchange order id of a new order is its command's sequence number.
                    workload.accepted(slot.account, response.sequence);
                }
            } else {
                report.rejected += 1;
            }
            if response.client_sequence >= first_measured {
                report
                    .histogram
                    .saturating_record(at.saturating_sub(slot.intended_ns).max(1));
            }
        })?;
        work += polled;
        while oldest < next && ring[(oldest & mask) as usize].answered {
            oldest += 1;
        }
        // Follow the leader: a hint or an announcement, or silence with commands outstanding.
        let now = now_ns();
        let silent = oldest < next
            && now.saturating_sub(last_answer_ns.max(last_move_ns))
                > config.leader_timeout.as_nanos() as u64;
        let move_to = move_to
            .filter(|&t| t < client.members() && t != client.target())
            .or_else(|| silent.then(|| (client.target() + 1) % client.members()));
        if let Some(target) = move_to.filter(|_| client.members() > 1) {
            // Whatever was queued for the old target goes to the new one.
            client.set_target(target);
            client.hello();
            report.leader_changes += 1;
            last_move_ns = now;
            resend_from = Some(oldest);
            last_resend_scan = 0;
        }
        if last_hello.elapsed() > Duration::from_millis(200) {
            // Members that restarted forgot us: announce again (a no-op for the others).
            last_hello = Instant::now();
            client.hello();
        }
        // Resend what waited too long (or what a gap reject asks for), in order, at most every
        // 10 ms.
        let now = now_ns();
        if now.saturating_sub(last_resend_scan) > 10_000_000 {
            last_resend_scan = now;
            let forced = resend_from.take().unwrap_or(u64::MAX);
            for sequence in oldest..next {
                let slot = &mut ring[(sequence & mask) as usize];
                if !slot.answered
                    && (sequence >= forced
                        || now.saturating_sub(slot.sent_ns) > config.resend_after.as_nanos() as u64)
                {
                    if !client.send(sequence, slot.command.as_bytes()) {
                        report.back_pressured += 1;
                        break;
                    }
                    report.resends += 1;
                    if report.resent_sequences.len() < 16 {
                        report.resent_sequences.push(sequence);
                    }
                    slot.sent_ns = now;
                    work += 1;
                }
            }
            let waited = now.saturating_sub(last_answer_ns.max(intended(next.min(last))));
            if oldest < next && waited > config.stall_timeout.as_nanos() as u64 {
                return Err(LoadError::Stalled {
                    timeout: config.stall_timeout,
                    sent: next - first,
                    answered: report.committed + report.rejected,
                });
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            on_progress(next - first, report.committed + report.rejected);
        }
        if work == 0 {
            idle += 1;
            if idle > 100 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        } else {
            idle = 0;
        }
    }
    report.elapsed =
        Duration::from_nanos(last_answer_ns.saturating_sub(first_measured_ns.unwrap_or(0)));
    Ok(report)
}

fn new_order_account(command: &CommandRecord) -> u32 {
    match command.decode() {
        Ok(Command::NewOrder(order)) => order.account_id,
        _ => 0,
    }
}

/// Prints a histogram's percentiles in microseconds, one line.
pub fn percentiles_us(histogram: &Histogram<u64>) -> String {
    let us = |v: u64| v as f64 / 1000.0;
    format!(
        "p50={:.1}us p99={:.1}us p99.9={:.1}us p99.99={:.1}us max={:.1}us",
        us(histogram.value_at_quantile(0.5)),
        us(histogram.value_at_quantile(0.99)),
        us(histogram.value_at_quantile(0.999)),
        us(histogram.value_at_quantile(0.9999)),
        us(histogram.max()),
    )
}
