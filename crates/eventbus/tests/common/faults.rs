//! Faults between a client and a Kafka broker, for tests: a tansu broker of the test's own, and
//! a fault-injecting TCP proxy in front of it, as toxiproxy and Jepsen do. Shared by the bus's
//! outage tests and the CLI's fault suite (`#[path]`-included by both).

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A tansu broker of this test's own, on its memory engine, that tells clients to reach it at
/// the proxy's port.
pub struct Broker(Child);

impl Broker {
    pub fn start(port: u16, advertised: u16) -> Self {
        let tansu = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let mut child = Command::new(&tansu)
            .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
            .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {tansu} (scripts/test.sh installs it): {e}"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self(child);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu did not listen on {port} within 10 s");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Network {
    /// Forwards every byte both ways.
    Up,
    /// Closes the open connections and every new one at once.
    Refused,
    /// Accepts and reads, but forwards and answers nothing; the connections open now are
    /// closed when it ends, since bytes were lost.
    Blackholed,
}

/// A TCP proxy on a free loopback port in front of `127.0.0.1:<upstream>`.
pub struct Proxy {
    pub port: u16,
    network: watch::Sender<Network>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (network, state) = watch::channel(Network::Up);
        let task = tokio::spawn(async move {
            // Aborting the proxy drops the set, which aborts every connection.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(forward(client, upstream, state.clone()));
            }
        });
        Self { port, network, task }
    }

    pub fn set(&self, network: Network) {
        self.network.send_replace(network);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one connection until the network fails, then does what the fault says.
async fn forward(mut client: TcpStream, upstream: u16, mut network: watch::Receiver<Network>) {
    let now = *network.borrow_and_update();
    if now == Network::Up {
        let Ok(mut broker) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => return,
            _ = network.wait_for(|n| *n != Network::Up) => {}
        }
    }
    if *network.borrow() == Network::Blackholed {
        let mut sink = vec![0u8; 64 * 1024];
        let discard = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} };
        tokio::select! {
            () = discard => {}
            _ = network.wait_for(|n| *n != Network::Blackholed) => {}
        }
    }
}
