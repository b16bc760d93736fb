//! Helpers shared by the tests that run the built `bus` binary.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest any one run of the binary may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// The `bus` command, with the caller's `BUS_*` environment removed and colour off.
pub fn bus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bus"));
    // Keep the caller's environment from changing what is tested.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BUS_") {
            c.env_remove(k);
        }
    }
    c.env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

/// Waits for `child` at most [`RUN_TIMEOUT`], killing it past that.
pub fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "bus did not exit within {RUN_TIMEOUT:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn run(cmd: &mut Command) -> Output {
    wait(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bus"),
    )
}
