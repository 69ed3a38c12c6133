//! Directory helpers shared by the gateway's journals that live in generations (the session
//! store and the submission log): a generation is a journal directory `<prefix><10 digits>`,
//! replaced by writing the next one in full, syncing it and the parent directory, then removing
//! the old one.

use std::path::{Path, PathBuf};

/// The directory of generation `generation` under `dir`.
pub(crate) fn generation_path(dir: &Path, prefix: &str, generation: u64) -> PathBuf {
    dir.join(format!("{prefix}{generation:010}"))
}

/// The generation a directory name stands for, if it is `<prefix><10 digits>` (generations
/// count from 1).
pub(crate) fn parse_generation(name: &str, prefix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&generation| generation > 0)
}

/// Makes a directory's entries durable (new, renamed and removed files).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|handle| handle.sync_all())
}

/// Removes a directory and what it holds; one that does not exist is not an error.
pub(crate) fn remove_dir_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_not_generations() {
        let path = generation_path(Path::new("/d"), "gen-", 42);
        assert_eq!(path, Path::new("/d/gen-0000000042"));
        assert_eq!(parse_generation("gen-0000000042", "gen-"), Some(42));
        for name in [
            "gen-42",
            "gen-00000000420",
            "gen-00000000x2",
            "generation-0000000042",
            "gen-0000000000",
        ] {
            assert_eq!(parse_generation(name, "gen-"), None, "{name}");
        }
    }
}
