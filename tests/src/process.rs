//! The `cyberid` binary as a child process: started on port 0, waited for, stopped by signal.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// The node binary, built by this crate (`tests/src/bin/cyberid_node.rs`); its path comes
/// from the test binary that calls.
pub fn cyberid(binary: &str) -> Command {
    Command::new(binary)
}

/// Starts `cyberid serve` on port 0 over `data_dir` with `args` added; the child and the
/// address it printed on its first line.
pub fn serve(binary: &str, data_dir: &Path, args: &[&str]) -> (Child, SocketAddr) {
    let mut child = cyberid(binary)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log",
            "warn",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let address = line
        .trim()
        .strip_prefix("cyberid listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, address)
}

/// Sends `signal` (`TERM`, `KILL`) to the child and waits for it.
pub fn signal(child: &mut Child, signal: &str) -> ExitStatus {
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}

/// A connection to the node once its `/readyz` answers 200 (within ten seconds).
pub async fn wait_ready(address: SocketAddr) -> cyberid::Client {
    for _ in 0..200 {
        if let Ok(mut client) = cyberid::Client::connect(address).await
            && let Ok((status, _)) = client.call(hyper::Method::GET, "/readyz", None, None).await
            && status == 200
        {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node never became ready");
}

/// A child process killed (SIGKILL) when dropped, so that a failing test leaves no node
/// running.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
