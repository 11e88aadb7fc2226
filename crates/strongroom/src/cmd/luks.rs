//! `strongroom luks ...` — owned by the LUKS2 work (issue 4).

use clap::Subcommand;

#[derive(Subcommand)]
pub enum LuksCommand {
    /// Print the LUKS2 header.
    Dump {
        /// Device or file.
        device: std::path::PathBuf,
    },
}

pub fn run(cmd: LuksCommand) -> anyhow::Result<i32> {
    match cmd {
        LuksCommand::Dump { device } => anyhow::bail!("luks dump {}: not built yet", device.display()),
    }
}
