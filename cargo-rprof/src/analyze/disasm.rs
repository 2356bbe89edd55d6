//! `cargo rprof disasm REGEX FILE`.

use crate::cli::DisasmArgs;
use crate::CliError;

/// `cargo rprof disasm`.
pub fn disasm(_a: &DisasmArgs) -> Result<(), CliError> {
    Err(CliError::Usage("not yet".into()))
}
