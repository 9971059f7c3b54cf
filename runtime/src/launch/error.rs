//! The launcher's error: workers that could not be started where they were asked for.

use std::fmt;

/// Workers could not be started by a cluster launcher, or did not connect back.
///
/// The message says what was run and what happened: `srun` could not be started or
/// ended early, the workers did not connect in time, or connections were refused
/// because they did not prove they hold the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchError {
    message: String,
    refused: usize,
}

impl LaunchError {
    pub(crate) fn new(message: String, refused: usize) -> Self {
        LaunchError { message, refused }
    }

    /// How many connections were refused because their authentication failed (a
    /// wrong key, or no handshake at all).
    pub fn refused(&self) -> usize {
        self.refused
    }
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.refused > 0 {
            write!(
                f,
                "; {} connection(s) were refused: authentication failed",
                self.refused
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for LaunchError {}
