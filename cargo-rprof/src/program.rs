//! `cargo rprof run`: build a program as `cargo run` would, run it under the preload library,
//! write its profiles when it ends — by returning, by `exit`, or by SIGINT, SIGTERM or SIGHUP —
//! and end with its status.
//!
//! The program is our own child (not cargo's), so that we can wait for its profiles: Ctrl-C in
//! a terminal reaches it directly (same process group), and a signal sent to `cargo rprof`
//! alone (`kill PID`, a CI runner cancelling a job) is forwarded to it. Either way it writes its
//! profiles and ends by the signal; we post-process, print the summary and end by the same
//! signal, as if the program had been run without rprof.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

use crate::session::{ProfileKind, Setup, TestRun};
use crate::{postprocess, runner, signals, CliError};

/// Build, run and profile the program `run` names; returns its exit code.
pub fn run(run: &TestRun) -> Result<i32, CliError> {
    let setup = Setup::new(run)?;
    let program = build(&setup, run)?;
    let program = match program {
        Ok(path) => path,
        Err(code) => return Ok(code),
    };
    let kinds: Vec<ProfileKind> = run.requests.iter().map(|r| r.kind).collect();
    // One program per session: its record carries our pid, which names its raw files.
    let id = std::process::id();
    runner::record_run(&program, &setup.session, id, None).map_err(|e| {
        CliError::io(
            format!(
                "cannot keep a copy of {} for symbolization",
                program.display()
            ),
            e,
        )
    })?;
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&run.binary_args);
    runner::inject(
        &mut cmd,
        &setup.session,
        id,
        setup.preload.as_os_str(),
        &kinds,
    );
    for r in &run.requests {
        if let Some(rate) = r.kind.rate_env() {
            cmd.env(rate, r.rate.to_string());
        }
    }
    cmd.env("RPROF_WRITE_ON_SIGNAL", "1");
    if let Some(live) = &run.http {
        cmd.env("RPROF_HTTP", &live.addr);
        if live.allow_remote {
            cmd.env("RPROF_HTTP_ALLOW_REMOTE", "1");
        }
        // The live profiles sample at the asked rates even without their --*profile flags.
        for (var, rate) in &live.rates {
            cmd.env(var, rate.to_string());
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::io(format!("cannot run {}", program.display()), e))?;
    signals::forward(child.id() as i32, signals::Reach::Root);
    let status = child.wait();
    signals::stop();
    let status = status.map_err(|e| CliError::io("cannot wait for the program", e))?;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if let Some(sig) = status.signal() {
        crate::term::status(
            "Ended",
            format!("{} by {}", program.display(), signals::signal_name(sig)),
        );
    }
    let code = postprocess::finish(&setup.session, &run.requests, code)?;
    if let Some(sig) = status.signal() {
        signals::end_by_signal(sig);
    }
    Ok(code)
}

/// `cargo build` the program; `Ok(Err(code))` when cargo failed (it has said why).
fn build(setup: &Setup, run: &TestRun) -> Result<Result<PathBuf, i32>, CliError> {
    let mut cmd = setup.cargo_command("build", run);
    cmd.arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        CliError::Cargo(format!("cannot run {}: {e}", setup.cargo.to_string_lossy()))
    })?;
    let mut programs: Vec<(String, PathBuf)> = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(program) = program_of(&line) {
                programs.push(program);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| CliError::Cargo(format!("cannot wait for cargo: {e}")))?;
    if !status.success() {
        return Ok(Err(status.code().unwrap_or(101)));
    }
    if programs.len() > 1 {
        // As `cargo run`: the package's `default-run`, if it names one of them.
        if let Some(name) = default_run(setup, run) {
            programs.retain(|(n, _)| *n == name);
        }
    }
    match programs.len() {
        1 => Ok(Ok(programs.remove(0).1)),
        0 => Err(CliError::Usage(
            "cargo built no binary to run: name one with --bin NAME or --example NAME".into(),
        )),
        _ => {
            let names: Vec<&str> = programs.iter().map(|(n, _)| n.as_str()).collect();
            Err(CliError::Usage(format!(
                "cargo built several binaries ({}): choose one with --bin NAME or --example NAME",
                names.join(", ")
            )))
        }
    }
}

/// The `default-run` binary of the workspace's packages, when exactly one package sets one.
fn default_run(setup: &Setup, run: &TestRun) -> Option<String> {
    let mut cmd = std::process::Command::new(&setup.cargo);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(manifest) = crate::session::flag_value(&run.cargo_args, "--manifest-path") {
        cmd.arg("--manifest-path").arg(manifest);
    }
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mut names = metadata
        .get("packages")?
        .as_array()?
        .iter()
        .filter_map(|p| p.get("default_run")?.as_str());
    match (names.next(), names.next()) {
        (Some(name), None) => Some(name.to_owned()),
        _ => None,
    }
}

/// A `compiler-artifact` message's runnable binary (a `bin` or an `example`): name and path.
fn program_of(line: &str) -> Option<(String, PathBuf)> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let executable = message.get("executable")?.as_str()?;
    let target = message.get("target")?;
    let runnable = target
        .get("kind")?
        .as_array()?
        .iter()
        .any(|k| matches!(k.as_str(), Some("bin" | "example")));
    let tested = message
        .get("profile")
        .and_then(|p| p.get("test"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if !runnable || tested {
        return None;
    }
    let name = target.get("name")?.as_str()?.to_owned();
    Some((name, PathBuf::from(executable)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_artifacts_only() {
        let bin = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"server"},"profile":{"test":false},"executable":"/t/debug/server"}"#;
        assert_eq!(
            program_of(bin),
            Some(("server".into(), PathBuf::from("/t/debug/server")))
        );
        let example = bin.replace("[\"bin\"]", "[\"example\"]");
        assert!(program_of(&example).is_some());
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"x"},"executable":null}"#;
        assert_eq!(program_of(lib), None);
        let build_script = r#"{"reason":"compiler-artifact","target":{"kind":["custom-build"],"name":"build-script-build"},"executable":"/t/build/x/build-script-build"}"#;
        assert_eq!(program_of(build_script), None);
        assert_eq!(program_of("not json"), None);
        assert_eq!(
            program_of(r#"{"reason":"build-finished","success":true}"#),
            None
        );
    }
}
