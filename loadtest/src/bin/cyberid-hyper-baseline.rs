//! `cyberid-hyper-baseline`: a bare hyper endpoint that answers every POST with the same small
//! JSON verdict, on the node's HTTP setup (hyper's HTTP/1.1 server with keep-alive, a header
//! timeout and TCP_NODELAY on a multi-threaded tokio runtime, mimalloc). Loading it with
//! `cyberid-loadtest --expect-any` measures what HTTP alone costs on this machine: the ceiling
//! no verification node can pass.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The answer to every POST: the size of a real `replayed` verdict.
const ANSWER: &[u8] = br#"{"verdict":"invalid","reason":"replayed"}"#;

/// A bare hyper endpoint answering every POST with a fixed JSON body, to measure the HTTP
/// ceiling with `cyberid-loadtest --expect-any`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Tokio worker threads; 0 is one per core, as the node's default.
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let post = request.method() == Method::POST;
    // Read the body as the node does, so that both pay for receiving it.
    let _ = request.into_body().collect().await;
    let mut response = if post {
        Response::new(Full::new(Bytes::from_static(ANSWER)))
    } else {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        response
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!(
        "cyberid-hyper-baseline listening on http://{}",
        listener.local_addr()?
    );
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .keep_alive(true);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    eprintln!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        runtime.worker_threads(args.workers);
    }
    let result = runtime
        .thread_name("baseline-http")
        .enable_all()
        .build()
        .and_then(|runtime| runtime.block_on(serve(args.listen)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cyberid-hyper-baseline: {error}");
            ExitCode::FAILURE
        }
    }
}
