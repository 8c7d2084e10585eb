//! `tenantry keys`: the chain head signing key (`global/chain_head_key`, made by `serve`).
//! `export-pubkey` writes its public half, 64 lowercase hex digits and a newline, the form
//! `verify --pubkey FILE` reads (docs/audit.md, "Anchored chain heads").

use std::path::PathBuf;

use anyhow::Context;

use crate::audit::anchor::{public_key_hex, AnchorError, HeadSigner};
use crate::config::Config;

/// `tenantry keys`.
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Print (or write to --out) the public key of the chain head signing key as 64 hex digits,
    /// for `tenantry verify FILE --pubkey KEYFILE`.
    ExportPubkey {
        /// Write the key to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs `tenantry keys`.
pub fn keys(args: &KeysArgs, config: &Config) -> anyhow::Result<()> {
    match &args.command {
        KeysCommand::ExportPubkey { out } => {
            let signer = HeadSigner::load(&config.server().data_dir)?.ok_or(AnchorError::NoKey)?;
            let text = format!("{}\n", public_key_hex(&signer.public_key()));
            match out {
                Some(path) => std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}
