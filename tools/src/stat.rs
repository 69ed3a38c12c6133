//! `exchange stat` and `exchange top`: live views of running nodes from their memory-mapped
//! counters files (`sequencer::counters`, `counters` in each journal directory), read without
//! disturbing the nodes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sequencer::clock::unix_now_ns;
use sequencer::counters::{Counters, CountersReader, Slot, TopOfBook, FILE_NAME};

use crate::cluster::{install_signal_handlers, STOP};

/// A counters file older than this is shown as stale (its node is not running).
const STALE_AFTER: Duration = Duration::from_secs(2);

/// Options of `exchange stat`.
#[derive(clap::Args, Debug)]
pub struct StatOptions {
    /// The node's journal directory (where it writes `counters`), or a node's configuration
    /// file (its journal directory is taken from it).
    #[arg(long, conflicts_with = "config")]
    pub dir: Option<PathBuf>,
    /// A node's configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seconds between two reports.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Reports to print (0: until interrupted).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

/// Options of `exchange top`.
#[derive(clap::Args, Debug)]
pub struct TopOptions {
    /// A cluster's directory (`exchange cluster up --dir`, `exchange demo --dir`): every
    /// `*/counters` below it is a node. Or one journal directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Print one frame as text and exit (also what happens without a terminal).
    #[arg(long)]
    pub once: bool,
    /// Milliseconds between two refreshes.
    #[arg(long, default_value_t = 500)]
    pub refresh_ms: u64,
}

/// The counters file of a journal directory or of a node's configuration.
fn counters_path(dir: Option<&Path>, config: Option<&Path>) -> Result<PathBuf> {
    match (dir, config) {
        (Some(dir), _) => Ok(dir.join(FILE_NAME)),
        (None, Some(config)) => {
            let checked = sequencer::config::NodeConfig::load(config)?;
            Ok(checked.agent.journal.dir.join(FILE_NAME))
        }
        (None, None) => bail!("give the node's journal directory (--dir) or its --config"),
    }
}

/// A price in ticks as a decimal.
pub fn price_text(price: i64, exponent: i8) -> String {
    if exponent >= 0 {
        return (i128::from(price) * 10i128.pow(exponent as u32)).to_string();
    }
    let scale = 10i128.pow(u32::from(exponent.unsigned_abs()));
    let value = i128::from(price);
    let sign = if value < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        value.abs() / scale,
        value.abs() % scale,
        width = usize::from(exponent.unsigned_abs())
    )
}

fn symbol_text(top: &TopOfBook) -> String {
    String::from_utf8_lossy(&top.symbol)
        .trim_end_matches('\0')
        .to_string()
}

fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// Per-second rates between two readings of the same node.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    pub commands: f64,
    pub trades: f64,
    pub rejects: f64,
}

fn rates(previous: Option<&(Counters, Instant)>, now: &Counters, at: Instant) -> Rates {
    let Some((before, then)) = previous else {
        return Rates::default();
    };
    let seconds = at.duration_since(*then).as_secs_f64().max(1e-3);
    let per_second = |slot| now.get(slot).saturating_sub(before.get(slot)) as f64 / seconds;
    Rates {
        commands: per_second(Slot::CommandsApplied),
        trades: per_second(Slot::Trades),
        rejects: per_second(Slot::Rejected),
    }
}

/// The report `exchange stat` prints for one reading.
pub fn stat_report(counters: &Counters, rates: Rates, now_unix_ns: u64) -> String {
    let age = Duration::from_nanos(now_unix_ns.saturating_sub(counters.get(Slot::UpdatedUnixNs)));
    let up = Duration::from_nanos(now_unix_ns.saturating_sub(counters.started_unix_ns));
    let leader = match counters.get(Slot::Leader) {
        u64::MAX => "none known".to_string(),
        id => format!("node {id}"),
    };
    let mut out = format!(
        "node {} (pid {}, up {:.1} s, updated {:.2} s ago{}): {}, term {}, leader {leader}\n",
        counters.get(Slot::NodeId),
        counters.pid,
        up.as_secs_f64(),
        age.as_secs_f64(),
        if age > STALE_AFTER {
            "; STALE: the node is not running"
        } else {
            ""
        },
        counters.role(),
        counters.get(Slot::Term),
    );
    let end = counters.get(Slot::LogEnd);
    out += &format!(
        "  log end {end} (sequence {}), durable {}, commit {}, applied {}\n",
        counters.get(Slot::LastSequence),
        counters.get(Slot::Durable),
        counters.get(Slot::CommitPosition),
        counters.get(Slot::AppliedPosition)
    );
    if counters.get(Slot::Role) == 2 {
        let members = counters.get(Slot::Members) as usize;
        let followers: Vec<String> = (0..members)
            .filter(|&id| id as u64 != counters.get(Slot::NodeId))
            .map(|id| {
                let at = counters.match_position(id);
                format!(
                    "node {id} at {at} (behind {} bytes)",
                    end.saturating_sub(at)
                )
            })
            .collect();
        out += &format!("  followers: {}\n", followers.join(", "));
    }
    out += &format!(
        "  commands {} ({:.0}/s), trades {} ({:.0}/s), accepted {}, rejected {} ({:.0}/s), events {}\n",
        counters.get(Slot::CommandsApplied),
        rates.commands,
        counters.get(Slot::Trades),
        rates.trades,
        counters.get(Slot::Accepted),
        counters.get(Slot::Rejected),
        rates.rejects,
        counters.get(Slot::Events)
    );
    if counters.get(Slot::CommitDelaySamples) > 0 {
        out += &format!(
            "  commit delay (leader, sampled, last window): p50 {} p99 {} p99.9 {} max {} ({} samples)\n",
            ms(counters.get(Slot::CommitDelayP50)),
            ms(counters.get(Slot::CommitDelayP99)),
            ms(counters.get(Slot::CommitDelayP999)),
            ms(counters.get(Slot::CommitDelayMax)),
            counters.get(Slot::CommitDelaySamples)
        );
    }
    out += &format!(
        "  errors: responses dropped {}, inbox dropped {}, back-pressured sends {}; elections {}, leaderships {}, step-downs {}, truncations {}\n",
        counters.get(Slot::ResponsesDropped),
        counters.get(Slot::InboxDropped),
        counters.get(Slot::BackPressured),
        counters.get(Slot::Elections),
        counters.get(Slot::Leaderships),
        counters.get(Slot::StepDowns),
        counters.get(Slot::Truncations)
    );
    out += &format!(
        "  state hash {:016x}, checkpoints verified {}, responses sent {}\n",
        counters.get(Slot::StateHash),
        counters.get(Slot::CheckpointsVerified),
        counters.get(Slot::ResponsesSent)
    );
    for top in counters.instruments() {
        let side = |side: Option<(i64, u64)>| {
            side.map_or("-".to_string(), |(price, quantity)| {
                format!("{quantity} @ {}", price_text(price, top.price_exponent))
            })
        };
        out += &format!(
            "  {} (instrument {}): bid {}, ask {}\n",
            symbol_text(&top),
            top.instrument_id,
            side(top.bid),
            side(top.ask)
        );
    }
    out
}

/// `exchange stat`.
pub fn stat(options: StatOptions) -> Result<ExitCode> {
    let path = counters_path(options.dir.as_deref(), options.config.as_deref())?;
    let reader = CountersReader::open(&path)
        .with_context(|| "is the node running? it writes its counters file when it starts")?;
    install_signal_handlers();
    let interval = Duration::from_secs_f64(options.interval.clamp(0.05, 3600.0));
    let mut previous: Option<(Counters, Instant)> = None;
    let mut printed = 0;
    while !STOP.load(Ordering::Acquire) {
        let counters = reader.read()?;
        let at = Instant::now();
        print!(
            "{}",
            stat_report(
                &counters,
                rates(previous.as_ref(), &counters, at),
                unix_now_ns()
            )
        );
        printed += 1;
        if options.count > 0 && printed >= options.count {
            break;
        }
        println!();
        previous = Some((counters, at));
        std::thread::sleep(interval);
    }
    Ok(ExitCode::SUCCESS)
}

/// Every counters file of a cluster directory (`*/counters`, sorted) or of a journal directory.
fn find_counters(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join(FILE_NAME).is_file() {
        return Ok(vec![dir.join(FILE_NAME)]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join(FILE_NAME))
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    if found.is_empty() {
        bail!(
            "no node counters in {} (expected {}/counters or <dir>/*/counters: the journal directories of running nodes)",
            dir.display(),
            dir.display()
        );
    }
    Ok(found)
}

/// What `exchange top` shows: every node's reading and rates.
struct Cluster {
    readers: Vec<(PathBuf, CountersReader)>,
    previous: Vec<Option<(Counters, Instant)>>,
}

struct View {
    nodes: Vec<(Counters, Rates)>,
    now_unix_ns: u64,
}

impl Cluster {
    fn open(dir: &Path) -> Result<Cluster> {
        let readers = find_counters(dir)?
            .into_iter()
            .map(|path| Ok((path.clone(), CountersReader::open(&path)?)))
            .collect::<Result<Vec<_>>>()?;
        let previous = vec![None; readers.len()];
        Ok(Cluster { readers, previous })
    }

    fn read(&mut self) -> Result<View> {
        let mut nodes = Vec::new();
        for (index, (_, reader)) in self.readers.iter().enumerate() {
            let counters = reader.read()?;
            let at = Instant::now();
            let rate = rates(self.previous[index].as_ref(), &counters, at);
            nodes.push((counters.clone(), rate));
            self.previous[index] = Some((counters, at));
        }
        Ok(View {
            nodes,
            now_unix_ns: unix_now_ns(),
        })
    }
}

fn draw(frame: &mut ratatui::Frame<'_>, view: &View, title: &str) {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};

    let bold = Style::default().add_modifier(Modifier::BOLD);
    let [header, nodes_area, books_area, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(view.nodes.len() as u16 + 3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let leader = view.nodes.iter().find(|(c, _)| c.get(Slot::Role) == 2);
    frame.render_widget(
        Paragraph::new(format!(
            "exchange top — {title} — {} nodes, leader {}, term {}",
            view.nodes.len(),
            leader.map_or("none".to_string(), |(c, _)| format!(
                "node {}",
                c.get(Slot::NodeId)
            )),
            view.nodes
                .iter()
                .map(|(c, _)| c.get(Slot::Term))
                .max()
                .unwrap_or(0)
        ))
        .style(bold),
        header,
    );
    let leader_end = leader.map_or(0, |(c, _)| c.get(Slot::LogEnd));
    let rows = view.nodes.iter().map(|(c, r)| {
        let stale =
            Duration::from_nanos(view.now_unix_ns.saturating_sub(c.get(Slot::UpdatedUnixNs)))
                > STALE_AFTER;
        let delay = |slot| {
            if c.get(Slot::CommitDelaySamples) > 0 {
                ms(c.get(slot))
            } else {
                "-".into()
            }
        };
        Row::new(vec![
            c.get(Slot::NodeId).to_string(),
            if stale {
                "STOPPED".into()
            } else {
                c.role().to_string()
            },
            c.get(Slot::Term).to_string(),
            c.get(Slot::LastSequence).to_string(),
            c.get(Slot::LogEnd).to_string(),
            c.get(Slot::CommitPosition).to_string(),
            leader_end
                .saturating_sub(c.get(Slot::AppliedPosition))
                .to_string(),
            format!("{:.0}", r.commands),
            format!("{:.0}", r.trades),
            format!("{:.0}", r.rejects),
            delay(Slot::CommitDelayP50),
            delay(Slot::CommitDelayP99),
            (c.get(Slot::ResponsesDropped) + c.get(Slot::InboxDropped)).to_string(),
        ])
    });
    let widths = [
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(5),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(
                Row::new(vec![
                    "node",
                    "role",
                    "term",
                    "sequence",
                    "log end",
                    "commit",
                    "lag (B)",
                    "cmds/s",
                    "trades/s",
                    "rejects/s",
                    "commit p50",
                    "commit p99",
                    "drops",
                ])
                .style(bold),
            )
            .block(Block::default().borders(Borders::TOP).title(" nodes ")),
        nodes_area,
    );
    let books = leader
        .or(view.nodes.first())
        .map(|(c, _)| c.instruments())
        .unwrap_or_default();
    let book_rows = books.iter().map(|top| {
        let side = |side: Option<(i64, u64)>| match side {
            Some((price, quantity)) => {
                (quantity.to_string(), price_text(price, top.price_exponent))
            }
            None => ("-".into(), "-".into()),
        };
        let (bid_quantity, bid) = side(top.bid);
        let (ask_quantity, ask) = side(top.ask);
        Row::new(vec![symbol_text(top), bid_quantity, bid, ask, ask_quantity])
    });
    frame.render_widget(
        Table::new(
            book_rows,
            [
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(12),
                Constraint::Length(12),
            ],
        )
        .header(Row::new(vec!["symbol", "bid qty", "bid", "ask", "ask qty"]).style(bold))
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(" top of book (leader) "),
        ),
        books_area,
    );
    frame.render_widget(
        Paragraph::new("q: quit   commit p50/p99: leader's sampled commit delay over the last window   lag: bytes not yet applied"),
        footer,
    );
}

/// The frame as text (for `--once` and tests).
fn render_text(view: &View, title: &str, width: u16, height: u16) -> Result<String> {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut terminal = ratatui::Terminal::new(backend)?;
    terminal.draw(|frame| draw(frame, view, title))?;
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// `exchange top`.
pub fn top(options: TopOptions) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let mut cluster = Cluster::open(&options.dir)?;
    let title = options.dir.display().to_string();
    if options.once || !std::io::stdout().is_terminal() {
        // Two readings: the rates are the difference.
        cluster.read()?;
        std::thread::sleep(Duration::from_millis(options.refresh_ms.min(1000)));
        let view = cluster.read()?;
        print!("{}", render_text(&view, &title, 124, 24)?);
        return Ok(ExitCode::SUCCESS);
    }
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
    let mut terminal = ratatui::init();
    let refresh = Duration::from_millis(options.refresh_ms.max(50));
    let result = (|| -> Result<()> {
        loop {
            let view = cluster.read()?;
            terminal.draw(|frame| draw(frame, &view, &title))?;
            if event::poll(refresh)? {
                if let Event::Key(key) = event::read()? {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_print_with_their_exponent() {
        assert_eq!(price_text(49_950, -2), "499.50");
        assert_eq!(price_text(5, -4), "0.0005");
        assert_eq!(price_text(-125, -2), "-1.25");
        assert_eq!(price_text(7, 0), "7");
        assert_eq!(price_text(7, 2), "700");
    }
}
