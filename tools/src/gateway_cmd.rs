//! `exchange gateway --config FILE`: the FIX 4.2/4.4 acceptor in front of a cluster, one
//! process (see `gateway::runtime`). The configuration is TOML (see
//! `config/gateway.example.toml`); a bad one is refused naming the key and the problem.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gateway::runtime::{session_store_dir, GatewayRuntime, RuntimeConfig};
use gateway::{FileStore, FileStoreConfig};
use gateway::{FixVersion, GatewayConfig, SessionConfig};
use sequencer::driver::{unique_dir, EmbeddedDriver};
use sequencer::runtime::IdleStrategy;
use sequencer::transport::connect;
use serde::{Deserialize, Serialize};

use crate::cluster::{install_signal_handlers, STOP};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    pub gateway: GatewaySection,
    /// Instruments the gateway trades (and adds to the log when it lacks them).
    #[serde(default, rename = "instrument")]
    pub instruments: Vec<InstrumentSection>,
    /// FIX sessions.
    #[serde(rename = "session")]
    pub sessions: Vec<SessionSection>,
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// FIX acceptor address, `ip:port` (TCP).
    pub listen: String,
    /// Client ingress endpoint (`ip:port`, UDP) of every member, in node-id order (as the nodes'
    /// `cluster.ingress`).
    pub cluster_ingress: Vec<String>,
    /// This gateway's client id in the cluster (stable: its sequence numbers continue across
    /// restarts) and learner id.
    pub client_id: u64,
    /// UDP endpoints (`ip:port`) where the cluster answers commands and streams the log.
    pub response_endpoint: String,
    pub learner_endpoint: String,
    /// Session stores live here (one directory per session). Default: `gateway-store` beside
    /// the configuration file.
    #[serde(default)]
    pub store_dir: Option<PathBuf>,
    /// `"backoff"` (default) or `"busy-spin"` (dedicated hardware only).
    #[serde(default = "default_idle")]
    pub idle: String,
    /// Connection slots.
    #[serde(default = "default_connections")]
    pub connections_max: usize,
    /// Pin the gateway's thread (sockets, sessions, its matcher replica and its embedded media
    /// driver all run on it) to this CPU (core_affinity); unpinned when absent.
    #[serde(default)]
    pub cpu: Option<usize>,
}

fn default_idle() -> String {
    "backoff".into()
}
fn default_connections() -> usize {
    64
}

/// `[[instrument]]`: as the matcher's instrument configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSection {
    pub symbol: String,
    pub instrument_id: u32,
    /// Price unit 10^price_exponent (-2: cents).
    pub price_exponent: i8,
    pub quantity_exponent: i8,
    /// In price units.
    pub tick_size: u32,
    /// In quantity units.
    pub lot_size: u32,
    /// Lowest price (price units) and the number of price levels above it.
    pub price_min: i64,
    pub price_levels: u32,
    #[serde(default)]
    pub band_width_ticks: u32,
    pub reference_price: i64,
    #[serde(default = "one")]
    pub quantity_min_lots: u32,
    pub quantity_max_lots: u32,
    #[serde(default)]
    pub notional_max: u64,
}

fn one() -> u32 {
    1
}

/// `[[session]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// "FIX.4.2" or "FIX.4.4".
    pub version: String,
    pub sender_comp_id: String,
    pub target_comp_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default = "default_heartbeat_min")]
    pub heartbeat_interval_s_min: u32,
    #[serde(default = "default_heartbeat_max")]
    pub heartbeat_interval_s_max: u32,
    #[serde(default = "default_throttle")]
    pub throttle_messages_per_second: u32,
    #[serde(default = "default_true")]
    pub cancel_on_disconnect: bool,
    pub account_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

fn default_heartbeat_min() -> u32 {
    1
}
fn default_heartbeat_max() -> u32 {
    120
}
fn default_throttle() -> u32 {
    10_000
}
fn default_true() -> bool {
    true
}

/// The instruments of the example configuration (`config/gateway.example.toml`), which
/// `cluster up` and the demo run with unless told otherwise.
pub fn example_instruments() -> Vec<matcher::InstrumentConfig> {
    let file: GatewayFile = toml::from_str(include_str!("../../config/gateway.example.toml"))
        .expect("the example configuration parses");
    file.check(Path::new("."))
        .expect("the example configuration is valid")
        .runtime
        .instruments
}

/// A checked configuration.
pub struct Checked {
    /// `gateway.cpu`.
    pub cpu: Option<usize>,
    pub runtime: RuntimeConfig,
    pub gateway: GatewayConfig,
    pub store_dir: PathBuf,
}

impl GatewayFile {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Checked> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: GatewayFile =
            toml::from_str(&text).with_context(|| format!("{}: invalid", path.display()))?;
        file.check(path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("{}", path.display()))
    }

    fn check(self, base: &Path) -> Result<Checked> {
        let g = &self.gateway;
        let listen = g
            .listen
            .parse()
            .with_context(|| format!("gateway.listen: {:?} is not ip:port", g.listen))?;
        if g.cluster_ingress.is_empty() {
            bail!("gateway.cluster_ingress: no members");
        }
        for (key, value) in [
            ("gateway.response_endpoint", &g.response_endpoint),
            ("gateway.learner_endpoint", &g.learner_endpoint),
        ]
        .into_iter()
        .chain(
            g.cluster_ingress
                .iter()
                .map(|e| ("gateway.cluster_ingress", e)),
        ) {
            value
                .parse::<std::net::SocketAddr>()
                .with_context(|| format!("{key}: {value:?} is not ip:port"))?;
        }
        let idle = match g.idle.as_str() {
            "backoff" => IdleStrategy::Backoff {
                max_sleep: Duration::from_micros(100),
            },
            "busy-spin" => IdleStrategy::BusySpin,
            other => bail!("gateway.idle: {other:?} is not \"backoff\" or \"busy-spin\""),
        };
        if g.client_id == 0 {
            bail!("gateway.client_id: must not be 0");
        }
        if let Some(cpu) = g.cpu {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if cpu >= cpus {
                bail!("gateway.cpu: CPU {cpu} does not exist (this machine has {cpus})");
            }
        }
        let mut instruments = Vec::new();
        let mut gateway_instruments = Vec::new();
        for (i, s) in self.instruments.iter().enumerate() {
            if s.symbol.is_empty() || s.symbol.len() > 8 || !s.symbol.is_ascii() {
                bail!(
                    "instrument[{i}].symbol: {:?} is not 1..=8 ASCII characters",
                    s.symbol
                );
            }
            let mut symbol = [0u8; 8];
            symbol[..s.symbol.len()].copy_from_slice(s.symbol.as_bytes());
            let config = matcher::InstrumentConfig {
                instrument_id: s.instrument_id,
                symbol,
                price_exponent: s.price_exponent,
                quantity_exponent: s.quantity_exponent,
                tick_size: s.tick_size,
                lot_size: s.lot_size,
                price_min: s.price_min,
                price_levels: s.price_levels,
                band_width_ticks: s.band_width_ticks,
                reference_price: s.reference_price,
                quantity_min_lots: s.quantity_min_lots,
                quantity_max_lots: s.quantity_max_lots,
                notional_max: s.notional_max,
            };
            gateway_instruments.push(gateway::app::Instrument::from_matcher(&config));
            instruments.push(config);
        }
        let mut sessions = Vec::new();
        for (i, s) in self.sessions.iter().enumerate() {
            let version = match s.version.as_str() {
                "FIX.4.2" => FixVersion::Fix42,
                "FIX.4.4" => FixVersion::Fix44,
                other => bail!("session[{i}].version: {other:?} is not \"FIX.4.2\" or \"FIX.4.4\""),
            };
            sessions.push(SessionConfig {
                version,
                sender_comp_id: s.sender_comp_id.clone(),
                target_comp_id: s.target_comp_id.clone(),
                password: s.password.clone(),
                heartbeat_interval_s_min: s.heartbeat_interval_s_min,
                heartbeat_interval_s_max: s.heartbeat_interval_s_max,
                throttle_messages_per_second: s.throttle_messages_per_second,
                cancel_on_disconnect: s.cancel_on_disconnect,
                account_id: s.account_id,
                account: s.account.clone(),
            });
        }
        let gateway = GatewayConfig {
            sessions,
            instruments: gateway_instruments,
            connections_max: g.connections_max,
            ..GatewayConfig::default()
        };
        // The core checks sessions and instruments (CompIDs, accounts, symbols): refuse here,
        // before anything starts, with its reason.
        gateway::Gateway::new(
            gateway.clone(),
            (0..gateway.sessions.len())
                .map(|_| gateway::MemoryStore::new(1024, 1))
                .collect(),
        )
        .map_err(|e| anyhow::anyhow!("session/instrument: {e}"))?;
        let store_dir = match &g.store_dir {
            Some(dir) if dir.is_absolute() => dir.clone(),
            Some(dir) => base.join(dir),
            None => base.join("gateway-store"),
        };
        Ok(Checked {
            cpu: g.cpu,
            runtime: RuntimeConfig {
                listen,
                ingress: g.cluster_ingress.clone(),
                first_target: 0,
                client_id: g.client_id,
                response_endpoint: g.response_endpoint.clone(),
                learner_id: g.client_id,
                learner_endpoint: g.learner_endpoint.clone(),
                matcher: sequencer::workload::matcher_config(),
                instruments,
                idle,
                submission_log_dir: store_dir.join("submissions"),
            },
            gateway,
            store_dir,
        })
    }
}

/// What a checked gateway configuration offers a FIX client, a line per session and
/// instrument (for `cluster up` to print where to connect).
pub fn describe(checked: &Checked) -> Vec<String> {
    use matcher::decimal::Units;
    let mut lines: Vec<String> = checked
        .gateway
        .sessions
        .iter()
        .map(|s| {
            format!(
                "session: SenderCompID {} TargetCompID {} ({}{}), account {}",
                s.target_comp_id,
                s.sender_comp_id,
                String::from_utf8_lossy(s.version.begin_string()),
                if s.password.is_some() {
                    ", password"
                } else {
                    ""
                },
                s.account_id
            )
        })
        .collect();
    lines.extend(checked.runtime.instruments.iter().map(|i| {
        let symbol = i.symbol.split(|&b| b == 0).next().unwrap_or_default();
        format!(
            "symbol {}: tick {}, lot {}, reference price {}",
            String::from_utf8_lossy(symbol),
            Units {
                value: i64::from(i.tick_size),
                exponent: i.price_exponent
            },
            Units {
                value: i64::from(i.lot_size),
                exponent: i.quantity_exponent
            },
            Units {
                value: i.reference_price,
                exponent: i.price_exponent
            }
        )
    }));
    lines
}

/// Writes a gateway configuration into `path` for a cluster whose members' client ingress
/// endpoints are `ingress`: the example's instruments (DEMO, ACME, XYZ) and sessions CLIENT1, CLIENT2
/// (FIX.4.4) and CLIENT3 (FIX.4.2) to EXCH, with free loopback ports (the FIX port too unless
/// `fix_port` is given); returns the FIX port.
pub fn write_local_gateway(
    path: &Path,
    ingress: &[String],
    client_id: u64,
    fix_port: Option<u16>,
) -> Result<u16> {
    write_local_gateway_with(path, ingress, client_id, fix_port, None, None)
}

/// As [`write_local_gateway`], with these instruments and sessions instead of the example's
/// where given.
pub fn write_local_gateway_with(
    path: &Path,
    ingress: &[String],
    client_id: u64,
    fix_port: Option<u16>,
    instruments: Option<&[InstrumentSection]>,
    sessions: Option<&[SessionSection]>,
) -> Result<u16> {
    let free_tcp = || -> Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    };
    let fix_port = match fix_port {
        Some(port) => port,
        None => free_tcp()?,
    };
    let example = include_str!("../../config/gateway.example.toml");
    let members = ingress
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = String::new();
    // The table a line belongs to: the example's instruments or sessions are left out where
    // others replace them.
    let mut table = "";
    for line in example.lines() {
        if line.starts_with('[') {
            table = line.trim();
        }
        let replaced_table = match table {
            "[[instrument]]" => instruments.is_some(),
            "[[session]]" => sessions.is_some(),
            _ => false,
        };
        if replaced_table {
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        let replaced = match key {
            "listen" => format!("listen = \"127.0.0.1:{fix_port}\""),
            "cluster_ingress" => format!("cluster_ingress = [{members}]"),
            "client_id" => format!("client_id = {client_id}"),
            "response_endpoint" => format!(
                "response_endpoint = \"127.0.0.1:{}\"",
                crate::cluster::free_udp_port()?
            ),
            "learner_endpoint" => format!(
                "learner_endpoint = \"127.0.0.1:{}\"",
                crate::cluster::free_udp_port()?
            ),
            _ => line.to_string(),
        };
        text.push_str(&replaced);
        text.push('\n');
    }
    #[derive(Serialize)]
    struct Tables<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        instrument: Option<&'a [InstrumentSection]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        session: Option<&'a [SessionSection]>,
    }
    let tables = toml::to_string(&Tables {
        instrument: instruments,
        session: sessions,
    })
    .context("writing the instruments and sessions")?;
    text.push('\n');
    text.push_str(&tables);
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(fix_port)
}

/// `exchange gateway --config FILE`.
pub fn run(config: &Path) -> Result<ExitCode> {
    let checked = GatewayFile::load(config)?;
    if let Some(cpu) = checked.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
            bail!("gateway.cpu: could not pin to CPU {cpu}");
        }
    }
    install_signal_handlers();
    let stores = checked
        .gateway
        .sessions
        .iter()
        .map(|s| {
            let dir = session_store_dir(&checked.store_dir, &s.sender_comp_id, &s.target_comp_id);
            FileStore::open(FileStoreConfig::new(&dir))
                .with_context(|| format!("session store {}", dir.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let driver = EmbeddedDriver::launch_invoked(&unique_dir("gateway"))?;
    let aeron = connect(driver.dir())?;
    let invoke = || {
        driver.do_work();
    };
    let mut runtime = GatewayRuntime::start(
        &aeron,
        &checked.runtime,
        checked.gateway.clone(),
        stores,
        &invoke,
    )
    .context("starting the gateway")?;
    println!(
        "gateway: FIX on {} ({} sessions: {}), cluster {}, log at sequence {}",
        runtime.net.local_addr()?,
        checked.gateway.sessions.len(),
        checked
            .gateway
            .sessions
            .iter()
            .map(|s| format!("{}→{}", s.target_comp_id, s.sender_comp_id))
            .collect::<Vec<_>>()
            .join(", "),
        checked.runtime.ingress.join(","),
        runtime.counters.sequence
    );
    let r = &runtime.counters;
    println!(
        "gateway: recovered {} resting orders of the sessions ({} without a ClOrdID in the submission log), sent again {} submissions not yet committed ({} dropped after a gap), cancelled the orders of {} sessions that cancel on disconnect",
        r.orders_restored, r.orders_unrecovered, r.resubmitted, r.resubmissions_dropped, r.cancelled_on_restart
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let result = runtime.run(&STOP, checked.runtime.idle, &|| driver.do_work());
    let c = runtime.gateway.counters();
    println!(
        "gateway: stopped; submissions {} reports {} duplicates ignored {} commands applied {} (sequence {}) refused {} resends {} leader changes {} state_hash {:016x}",
        c.submissions,
        c.reports,
        c.possible_duplicates_ignored,
        runtime.counters.commands_applied,
        runtime.counters.sequence,
        runtime.counters.submissions_refused,
        runtime.client.counters.resends,
        runtime.client.counters.leader_changes,
        runtime.matcher_state_hash()
    );
    result.context("gateway")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/gateway.example.toml");

    fn check(text: &str) -> Result<Checked, String> {
        let file: GatewayFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.check(Path::new("/etc/exchange"))
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn the_example_is_accepted_with_its_instruments_and_sessions() {
        let checked = check(EXAMPLE).unwrap();
        assert_eq!(checked.cpu, None);
        let symbols: Vec<&[u8]> = checked
            .runtime
            .instruments
            .iter()
            .map(|i| &i.symbol[..])
            .collect();
        assert_eq!(
            symbols,
            [b"DEMO\0\0\0\0", b"ACME\0\0\0\0", b"XYZ\0\0\0\0\0"]
        );
        assert_eq!(checked.gateway.sessions.len(), 3);
        assert_eq!(checked.store_dir, Path::new("/etc/exchange/gateway-store"));
        // Every replica has room for the example's instruments.
        let sections: GatewayFile = toml::from_str(EXAMPLE).unwrap();
        crate::cluster_file::check_capacity(&sections.instruments).unwrap();
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (from, to, expected) in [
            (
                "client_id = 9001",
                "client_id = 0",
                "gateway.client_id: must not be 0",
            ),
            (
                "listen = \"127.0.0.1:9878\"",
                "listen = \"localhost\"",
                "gateway.listen: \"localhost\" is not ip:port",
            ),
            (
                "idle = \"backoff\"",
                "idle = \"nap\"",
                "gateway.idle: \"nap\" is not \"backoff\" or \"busy-spin\"",
            ),
            ("# cpu = 1", &format!("cpu = {cpus}"), "gateway.cpu: CPU"),
            (
                "version = \"FIX.4.2\"",
                "version = \"FIX.5.0\"",
                "session[2].version: \"FIX.5.0\"",
            ),
            (
                "symbol = \"XYZ\"",
                "symbol = \"TOOLONGSYM\"",
                "instrument[2].symbol",
            ),
        ] {
            assert!(EXAMPLE.contains(from), "{from}");
            let error = check(&EXAMPLE.replacen(from, to, 1))
                .err()
                .unwrap_or_default();
            assert!(error.contains(expected), "{to}: {error}");
        }
        let pinned = check(&EXAMPLE.replacen("# cpu = 1", "cpu = 0", 1)).unwrap();
        assert_eq!(pinned.cpu, Some(0));
    }
}
