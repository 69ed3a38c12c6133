//! `exchange cluster up --config FILE`: one TOML file describing a whole local cluster (see
//! `config/cluster.example.toml`). Its `[local]` section holds what the command line could say
//! (nodes, directory, ports, gateway, feed); its `[node]`, `[cluster]`, `[journal]` and `[aeron]`
//! sections are copied into every node's configuration file, so every key of
//! `config/node.example.toml` can be set for the whole cluster, with the same name; its
//! `[[instrument]]` and `[[session]]` tables replace the gateway's built-in instruments and FIX
//! sessions (same keys as `config/gateway.example.toml`).
//!
//! A bad file is refused before anything starts, naming the key: unknown keys, keys that
//! `cluster up` sets itself for each node, values a node or the gateway would refuse, and
//! instruments that do not fit the replicas' matcher capacities.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::gateway_cmd::{InstrumentSection, SessionSection};

/// The sections copied into every node's file, in the order a node file has them.
pub const NODE_SECTIONS: [&str; 4] = ["node", "cluster", "journal", "aeron"];

/// Keys `cluster up` writes itself for each node: a cluster file may not set them.
const KEYS_PER_NODE: [(&str, &str); 4] = [
    ("node", "id"),
    ("cluster", "members"),
    ("cluster", "ingress"),
    ("journal", "dir"),
];

/// `[local]`: what the command line can also say (the command line wins).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    pub nodes: Option<u8>,
    /// Relative to the file's directory.
    pub dir: Option<PathBuf>,
    pub base_port: Option<u16>,
    /// 0: no gateway.
    pub fix_port: Option<u16>,
    pub feed: Option<bool>,
}

impl LocalSection {
    /// Each option of `self`, or where it has none, `fallback`'s (the command line over the
    /// file).
    pub fn or(self, fallback: LocalSection) -> LocalSection {
        LocalSection {
            nodes: self.nodes.or(fallback.nodes),
            dir: self.dir.or(fallback.dir),
            base_port: self.base_port.or(fallback.base_port),
            fix_port: self.fix_port.or(fallback.fix_port),
            feed: self.feed.or(fallback.feed),
        }
    }
}

/// A checked cluster file.
#[derive(Debug, Clone, Default)]
pub struct ClusterFile {
    pub local: LocalSection,
    /// Per node section (`NODE_SECTIONS`), its keys as TOML tables, copied into every node file.
    pub node_sections: Vec<(String, toml::Table)>,
    /// Replace the gateway's built-in instruments and sessions when present.
    pub instruments: Option<Vec<InstrumentSection>>,
    pub sessions: Option<Vec<SessionSection>>,
}

impl ClusterFile {
    /// Reads and checks `path` (the node and gateway keys are checked again, in full, by the
    /// node and gateway loaders once their files are written).
    pub fn load(path: &Path) -> Result<ClusterFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("{}", path.display()))
    }

    /// Parses the text of a cluster file whose directory is `base`.
    pub fn parse(text: &str, base: &Path) -> Result<ClusterFile> {
        let mut table: toml::Table = toml::from_str(text).context("invalid TOML")?;
        let mut file = ClusterFile::default();
        if let Some(local) = table.remove("local") {
            file.local = local.try_into().context("`local`")?;
            if let Some(dir) = file.local.dir.as_mut() {
                if dir.is_relative() {
                    *dir = base.join(&*dir);
                }
            }
        }
        if let Some(instruments) = table.remove("instrument") {
            file.instruments = Some(instruments.try_into().context("`instrument`")?);
        }
        if let Some(sessions) = table.remove("session") {
            file.sessions = Some(sessions.try_into().context("`session`")?);
        }
        for section in NODE_SECTIONS {
            let Some(value) = table.remove(section) else {
                continue;
            };
            let toml::Value::Table(keys) = value else {
                bail!("`{section}`: must be a table ([{section}])");
            };
            for (owner, key) in KEYS_PER_NODE {
                if owner == section && keys.contains_key(key) {
                    bail!("`{section}.{key}`: set by `cluster up` for each node; leave it out");
                }
            }
            file.node_sections.push((section.to_string(), keys));
        }
        if let Some(key) = table.keys().next() {
            bail!(
                "`{key}`: unknown section (a cluster file has local, {}, instrument, session)",
                NODE_SECTIONS.join(", ")
            );
        }
        if file.local.nodes == Some(0) {
            bail!("`local.nodes`: a cluster has at least one node");
        }
        if let Some(instruments) = &file.instruments {
            check_capacity(instruments)?;
        }
        Ok(file)
    }

    /// The keys of section `name` (None when the file has none).
    pub fn section(&self, name: &str) -> Option<&toml::Table> {
        self.node_sections
            .iter()
            .find(|(section, _)| section == name)
            .map(|(_, keys)| keys)
    }
}

/// The instruments fit the matcher capacities every replica runs with (the nodes', the
/// gateway's and the feed publisher's, all `sequencer::workload::matcher_config`): otherwise the
/// cluster would refuse them with `Capacity` after start-up.
pub fn check_capacity(instruments: &[InstrumentSection]) -> Result<()> {
    let config = sequencer::workload::matcher_config();
    if instruments.len() > config.instrument_capacity as usize {
        bail!(
            "`instrument`: {} instruments, the replicas have room for {}",
            instruments.len(),
            config.instrument_capacity
        );
    }
    let mut levels = 0u64;
    for (i, instrument) in instruments.iter().enumerate() {
        levels += 2 * u64::from(instrument.price_levels);
        if levels > u64::from(config.level_capacity) {
            bail!(
                "`instrument[{i}].price_levels`: the instruments up to this one need {levels} price levels (both sides), the replicas have {}",
                config.level_capacity
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterFile, String> {
        ClusterFile::parse(text, Path::new("/etc/exchange")).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn the_example_file_is_accepted() {
        let file = parse(include_str!("../../config/cluster.example.toml")).unwrap();
        assert_eq!(file.local.nodes, Some(3));
        assert_eq!(
            file.local.dir.as_deref(),
            Some(Path::new("/etc/exchange/cluster"))
        );
        assert_eq!(file.instruments.as_ref().map(Vec::len), Some(3));
        assert_eq!(file.sessions.as_ref().map(Vec::len), Some(3));
        assert_eq!(
            file.section("journal").unwrap()["sync"].as_str(),
            Some("none")
        );
    }

    #[test]
    fn an_empty_file_changes_nothing() {
        let file = parse("").unwrap();
        assert!(file.local.nodes.is_none());
        assert!(file.instruments.is_none() && file.sessions.is_none());
        assert!(file.node_sections.is_empty());
        assert!(file.section("journal").is_none());
    }

    #[test]
    fn bad_files_are_refused_naming_the_key() {
        for (text, expected) in [
            ("[local]\nnodez = 3\n", "`local`: unknown field `nodez`"),
            ("[local]\nnodes = 0\n", "`local.nodes`: a cluster has at least one node"),
            ("[node]\nid = 1\n", "`node.id`: set by `cluster up` for each node"),
            (
                "[cluster]\nmembers = []\n",
                "`cluster.members`: set by `cluster up`",
            ),
            ("[journal]\ndir = \"x\"\n", "`journal.dir`: set by `cluster up`"),
            ("[matcher]\norder_capacity = 1\n", "`matcher`: unknown section"),
            ("node = 3\n", "`node`: must be a table"),
            (
                "[[instrument]]\nsymbol = \"A\"\n",
                "`instrument`: missing field `instrument_id`",
            ),
            (
                "[[session]]\nversion = \"FIX.4.4\"\nsender_comp_id = \"EXCH\"\ntarget_comp_id = \"C\"\naccount_id = 1\ncolour = 1\n",
                "`session`: unknown field `colour`",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn instruments_beyond_the_replicas_capacity_are_refused() {
        let instrument = |id: u32, levels: u32| {
            format!(
                "[[instrument]]\nsymbol = \"S{id}\"\ninstrument_id = {id}\nprice_exponent = -2\nquantity_exponent = 0\ntick_size = 1\nlot_size = 1\nprice_min = 1\nprice_levels = {levels}\nreference_price = 100\nquantity_max_lots = 100\n"
            )
        };
        let config = sequencer::workload::matcher_config();
        let half = config.level_capacity / 2;
        assert!(parse(&instrument(1, half)).is_ok());
        let error = parse(&format!("{}{}", instrument(1, half), instrument(2, 1))).unwrap_err();
        assert!(error.contains("`instrument[1].price_levels`"), "{error}");
        let many: String = (1..=config.instrument_capacity + 1)
            .map(|id| instrument(id, 10))
            .collect();
        let error = parse(&many).unwrap_err();
        assert!(
            error.contains("instruments, the replicas have room for"),
            "{error}"
        );
    }
}
