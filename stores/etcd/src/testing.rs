//! A real 3-member etcd cluster on loopback, for tests and for trying the store out: started
//! from the installed `etcd` binary (Debian `etcd-server`) on free ports, with its data in a
//! temporary directory, and broken on demand (SIGKILL, SIGSTOP, restart).
//!
//! Compiled with the `testing` feature only. Every member runs under a small `sh` guard that
//! kills it with SIGKILL as soon as this process goes away, however it goes (a panic, an
//! abort, a test harness that never drops its statics), so no etcd outlives its test.
//!
//! ```no_run
//! use cyberid_store_etcd::testing::Cluster;
//!
//! let cluster = Cluster::start()?;
//! let leader = cluster.leader().expect("a 3-member cluster elects a leader");
//! cluster.kill(leader);
//! cluster.restart(leader)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use etcd_client::Client;

use crate::EtcdOptions;

/// The `sh` script every member runs under: `$1` its log, `$2` its data, then etcd's command.
const GUARD: &str = r#"log=$1; data=$2; shift 2
"$@" </dev/null >>"$log" 2>&1 &
echo $!
read cmd
kill -9 $! 2>/dev/null
wait $! 2>/dev/null
[ "$cmd" = keep ] || { rm -rf "$data" "$log"; rmdir "${data%/*}" 2>/dev/null; }
exit 0
"#;

/// How long a cluster may take to start and elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running 3-member etcd cluster. Dropping it kills every member and deletes its data.
#[derive(Debug)]
pub struct Cluster {
    members: Mutex<Vec<Member>>,
    token: String,
    initial_cluster: String,
    /// Taken at drop and shut down in the background, so that a cluster may be dropped from
    /// async code (a `#[tokio::test]`).
    runtime: Option<tokio::runtime::Runtime>,
    /// Held by clusters of [`Cluster::start_for_test`], released after the members die.
    _permit: Option<Permit>,
    // Last: the data outlives the members.
    dir: tempfile::TempDir,
}

/// Private clusters of one test process that may run at once. Each is three etcd processes
/// fsyncing their WALs; on a 2-core CI machine a test binary that starts one per test, all in
/// parallel, slowed them past every request timeout (a fresh cluster's first write took more
/// than 5 s) and failed tests for reasons that were not theirs.
const CONCURRENT_TEST_CLUSTERS: usize = 2;

#[derive(Debug)]
struct Permit;

static RUNNING: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

impl Permit {
    fn acquire() -> Permit {
        let (count, freed) = &RUNNING;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= CONCURRENT_TEST_CLUSTERS {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Permit
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Option<Guarded>,
}

/// An etcd process under its `sh` guard: closing `guard` (this end of the guard's stdin)
/// makes the guard kill etcd.
#[derive(Debug)]
struct Guarded {
    pid: u32,
    guard: Child,
    stdin: Option<ChildStdin>,
}

impl Guarded {
    /// Kills etcd (SIGKILL) and waits for the guard; the guard then deletes the member's data
    /// and log unless told to `keep` them (for a restart).
    fn kill(mut self, keep: bool) {
        signal("KILL", self.pid);
        if let Some(mut stdin) = self.stdin.take()
            && keep
        {
            let _ = stdin.write_all(b"keep\n");
        }
        let _ = self.guard.wait();
    }
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The Go architecture name etcd 3.4 must be told to run on, where it does not support the
/// platform officially (it refuses to start there without `ETCD_UNSUPPORTED_ARCH`).
fn unsupported_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" | "aarch64" | "powerpc64" => None,
        "x86" => Some("386"),
        "riscv64" => Some("riscv64"),
        "s390x" => Some("s390x"),
        "arm" => Some("arm"),
        other => Some(other),
    }
}

/// Free loopback ports, found by binding port 0 (all held at once, so they differ).
fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

impl Cluster {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives until drop")
    }

    /// Starts three members and waits until the cluster answers linearizable reads.
    pub fn start() -> io::Result<Self> {
        Self::start_with(None)
    }

    /// [`start`](Self::start) for a test that needs a cluster of its own (to kill, freeze or
    /// compact it): waits while [`CONCURRENT_TEST_CLUSTERS`] others started this way run in
    /// this process, so that parallel tests do not starve each other's clusters.
    pub fn start_for_test() -> io::Result<Self> {
        Self::start_with(Some(Permit::acquire()))
    }

    fn start_with(permit: Option<Permit>) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("cyberid-etcd-").tempdir()?;
        let ports = free_ports(6)?;
        let members: Vec<Member> = (0..3)
            .map(|index| Member {
                name: format!("m{index}"),
                client_port: ports[2 * index],
                peer_port: ports[2 * index + 1],
                process: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|member| format!("{}=http://127.0.0.1:{}", member.name, member.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cluster = Self {
            token: format!("cyberid-test-{}", ports[0]),
            members: Mutex::new(members),
            initial_cluster,
            runtime: Some(runtime),
            _permit: permit,
            dir,
        };
        for index in 0..3 {
            cluster.spawn(index)?;
        }
        cluster.wait_healthy(START_TIMEOUT)?;
        Ok(cluster)
    }

    fn members(&self) -> MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the cluster keeps its data and each member's log (`m0.log`...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn spawn(&self, index: usize) -> io::Result<()> {
        let mut members = self.members();
        let member = &mut members[index];
        if member.process.is_some() {
            return Ok(());
        }
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let data_dir = self.dir.path().join(&member.name);
        let log = self.log_path(&member.name);
        // The guard starts etcd in the background and prints its pid, then waits for a line
        // or the end of its stdin (this process killing the member, or ending however it
        // ends), kills etcd, and deletes its data unless the line said `keep`.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(GUARD)
            .arg("cyberid-etcd-guard")
            .arg(&log)
            .arg(&data_dir)
            .arg("etcd")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--logger", "zap"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(arch) = unsupported_arch() {
            command.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        let mut guard = command.spawn().map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot start etcd (install Debian's etcd-server): {error}"),
            )
        })?;
        let mut line = String::new();
        if let Some(stdout) = guard.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let pid = line
            .trim()
            .parse()
            .map_err(|_| io::Error::other(format!("the etcd guard printed no pid: {line:?}")))?;
        let stdin = guard.stdin.take();
        member.process = Some(Guarded { pid, guard, stdin });
        Ok(())
    }

    /// The client URLs of all three members.
    pub fn endpoints(&self) -> Vec<String> {
        (0..3).map(|index| self.endpoint(index)).collect()
    }

    /// One member's client URL.
    pub fn endpoint(&self, member: usize) -> String {
        format!("http://127.0.0.1:{}", self.members()[member].client_port)
    }

    /// The member's etcd process id, while it runs.
    pub fn pid(&self, member: usize) -> Option<u32> {
        self.members()[member]
            .process
            .as_ref()
            .map(|process| process.pid)
    }

    /// Store options for this cluster under a prefix of its own (`/test/<name>`), so that tests
    /// sharing a cluster never see each other's keys.
    pub fn options(&self, name: &str) -> EtcdOptions {
        EtcdOptions {
            endpoints: self.endpoints(),
            prefix: format!("/test/{name}"),
            node_id: Some(
                name.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(64)
                    .collect::<String>(),
            )
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| "test".into()),
            ..EtcdOptions::default()
        }
    }

    /// Kills the member with SIGKILL, as a crash or power cut would.
    pub fn kill(&self, member: usize) {
        let process = self.members()[member].process.take();
        if let Some(process) = process {
            process.kill(true);
        }
    }

    /// Freezes the member (SIGSTOP): it keeps its sockets but answers nothing, as a stalled
    /// machine or a long pause does.
    pub fn pause(&self, member: usize) {
        if let Some(pid) = self.pid(member) {
            signal("STOP", pid);
        }
    }

    /// Lets a paused member go on (SIGCONT).
    pub fn resume(&self, member: usize) {
        if let Some(pid) = self.pid(member) {
            signal("CONT", pid);
        }
    }

    /// Starts a killed member again on its data directory and waits until it answers.
    pub fn restart(&self, member: usize) -> io::Result<()> {
        self.spawn(member)?;
        let endpoint = self.endpoint(member);
        self.wait_for(START_TIMEOUT, || self.status(&endpoint).map(|_| ()))
    }

    /// The member that leads, asked of every running member (`None` while there is none).
    pub fn leader(&self) -> Option<usize> {
        let running: Vec<usize> = (0..3).filter(|&index| self.pid(index).is_some()).collect();
        for index in running {
            if let Some((member_id, leader)) = self.status(&self.endpoint(index))
                && leader != 0
                && member_id == leader
            {
                return Some(index);
            }
        }
        None
    }

    /// `(this member's id, its leader's id)` from one member, within a second.
    fn status(&self, endpoint: &str) -> Option<(u64, u64)> {
        self.runtime().block_on(async {
            let request = async {
                let mut client = Client::connect([endpoint], None).await?;
                client.status().await
            };
            let status = tokio::time::timeout(Duration::from_secs(1), request)
                .await
                .ok()?
                .ok()?;
            Some((status.header()?.member_id(), status.leader()))
        })
    }

    /// Waits until a linearizable read through every running member succeeds.
    pub fn wait_healthy(&self, timeout: Duration) -> io::Result<()> {
        let endpoints: Vec<String> = (0..3)
            .filter(|&index| self.pid(index).is_some())
            .map(|index| self.endpoint(index))
            .collect();
        self.wait_for(timeout, || {
            endpoints.iter().try_for_each(|endpoint| {
                self.runtime().block_on(async {
                    let request = async {
                        let mut client = Client::connect([endpoint], None).await?;
                        client.get("health", None).await
                    };
                    match tokio::time::timeout(Duration::from_secs(1), request).await {
                        Ok(Ok(_)) => Some(()),
                        _ => None,
                    }
                })
            })
        })
    }

    fn wait_for(&self, timeout: Duration, mut ready: impl FnMut() -> Option<()>) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ready().is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the etcd cluster is not healthy after {} s; member logs in {}",
                timeout.as_secs(),
                self.dir.path().display()
            ),
        ))
    }

    /// The backend database size of each running member, bytes (etcd's `dbSize`: what counts
    /// against `--quota-backend-bytes`).
    pub fn db_sizes(&self) -> io::Result<Vec<i64>> {
        let endpoints = self.endpoints_running();
        self.runtime().block_on(async {
            let mut sizes = Vec::new();
            for endpoint in endpoints {
                let mut client = Client::connect([endpoint], None)
                    .await
                    .map_err(io::Error::other)?;
                sizes.push(client.status().await.map_err(io::Error::other)?.db_size());
            }
            Ok(sizes)
        })
    }

    /// Defragments every running member, one after the other, giving the space that
    /// compaction freed back to the file system.
    pub fn defragment(&self) -> io::Result<()> {
        let endpoints = self.endpoints_running();
        self.runtime().block_on(async {
            for endpoint in endpoints {
                let mut client = Client::connect([endpoint], None)
                    .await
                    .map_err(io::Error::other)?;
                client.defragment().await.map_err(io::Error::other)?;
            }
            Ok(())
        })
    }

    /// Compacts the cluster's history up to its current revision (physically), so that a
    /// watch from an older revision fails as after a long disconnection.
    pub fn compact(&self) -> io::Result<i64> {
        let endpoints = self.endpoints_running();
        self.runtime().block_on(async {
            let mut client = Client::connect(endpoints, None)
                .await
                .map_err(io::Error::other)?;
            let revision = client
                .get("health", None)
                .await
                .map_err(io::Error::other)?
                .header()
                .map_or(0, |header| header.revision());
            client
                .compact(
                    revision,
                    Some(etcd_client::CompactionOptions::new().with_physical()),
                )
                .await
                .map_err(io::Error::other)?;
            Ok(revision)
        })
    }

    fn endpoints_running(&self) -> Vec<String> {
        (0..3)
            .filter(|&index| self.pid(index).is_some())
            .map(|index| self.endpoint(index))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        for member in self.members().iter_mut() {
            if let Some(process) = member.process.take() {
                // A paused member dies of SIGKILL too.
                process.kill(false);
            }
        }
        let _ = io::stderr().flush();
    }
}

/// One cluster for a whole test binary, started on first use: tests that need a cluster but
/// never break it share this one, each under its own prefix. Its members die with the test
/// process (the guards see to that, as statics are never dropped).
pub fn shared_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().expect("start the shared etcd test cluster"))
}

/// A second shared cluster, for stores that split their nonces over two clusters.
pub fn shared_second_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().expect("start the second shared etcd test cluster"))
}

/// A prefix no other test run uses: tests sharing a cluster, or a cluster left from a run
/// that was killed, never meet each other's keys.
pub fn unique_name(name: &str) -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!("{name}-{}", hex::encode(random))
}
