//! One keep-alive HTTP/1.1 connection per task, on hyper's low-level client.
//!
//! The connection's driver is polled inside the task that sends, not spawned as a task of its
//! own: a request then costs one task's wake-ups instead of two, which matters when the
//! generator shares two cores with the node it measures.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::verdict::TransportError;
use crate::{BodyFormat, Error};

type Body = Full<Bytes>;
type Driver = http1::Connection<TokioIo<TcpStream>, Body>;

/// An open connection.
pub(crate) struct Connection {
    sender: http1::SendRequest<Body>,
    driver: Pin<Box<Driver>>,
    /// The driver finished (the node closed the connection) or an exchange was abandoned
    /// mid-way: the connection must not be used again.
    dead: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects with TCP_NODELAY (a request is one small write; Nagle would hold it back
    /// waiting for the previous answer's ACK) and does the HTTP/1.1 handshake.
    pub(crate) async fn open(address: SocketAddr) -> Result<Self, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| error.to_string())?;
        stream
            .set_nodelay(true)
            .map_err(|error| error.to_string())?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| error.to_string())?;
        Ok(Self {
            sender,
            driver: Box::pin(driver),
            dead: false,
        })
    }

    /// Whether the connection can carry another request. Polls the driver once, so that a
    /// connection the node closed while it sat idle (a keep-alive timeout) is noticed now and
    /// replaced, rather than failing the next request as if the node had dropped it.
    pub(crate) fn usable(&mut self) -> bool {
        if self.dead || self.sender.is_closed() {
            return false;
        }
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        if self.driver.as_mut().poll(&mut context).is_ready() {
            self.dead = true;
        }
        !self.dead
    }

    /// Sends `request` and reads the whole answer, within `timeout`.
    pub(crate) async fn exchange(
        &mut self,
        request: Request<Body>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), TransportError> {
        let Self {
            sender,
            driver,
            dead,
        } = self;
        let exchange = async {
            sender.ready().await.map_err(|_| TransportError::Closed)?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| transport(&error))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| TransportError::Body)?
                .to_bytes();
            Ok((status, body))
        };
        let driven = async {
            tokio::select! {
                biased;
                result = exchange => result,
                _ = driver.as_mut() => {
                    *dead = true;
                    Err(TransportError::Closed)
                }
            }
        };
        match tokio::time::timeout(timeout, driven).await {
            Ok(result) => {
                if result.is_err() {
                    *dead = true;
                }
                result
            }
            Err(_) => {
                // The request may still be in flight: its answer would be read as the next's.
                *dead = true;
                Err(TransportError::Timeout)
            }
        }
    }
}

fn transport(error: &hyper::Error) -> TransportError {
    if error.is_canceled() || error.is_closed() || error.is_incomplete_message() {
        TransportError::Closed
    } else if error.is_timeout() {
        TransportError::Timeout
    } else {
        TransportError::Request
    }
}

/// The parts every verification request shares, built once: a request then costs a header map
/// clone and a reference-counted body, not formatting or parsing.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    uri: Uri,
    headers: HeaderMap,
}

impl Template {
    /// Requests to `path` on `address`, with the platform key as a bearer token.
    pub(crate) fn new(
        address: SocketAddr,
        path: &str,
        api_key: Option<&str>,
        body: BodyFormat,
    ) -> Result<Self, Error> {
        let uri: Uri = path
            .parse()
            .map_err(|_| Error::Config(format!("{path} is not a request path")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&address.to_string())
                .map_err(|_| Error::Config(format!("{address} is not a host header")))?,
        );
        if let Some(key) = api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                Error::Config("the API key has characters a header cannot carry".into())
            })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(match body {
                BodyFormat::Json => "application/json",
                BodyFormat::Binary => "application/octet-stream",
            }),
        );
        Ok(Self { uri, headers })
    }

    pub(crate) fn request(&self, body: Bytes) -> Request<Body> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A connection for the calls around a run (issuing, consuming, revoking), which reports
/// failures as errors rather than counting them.
#[derive(Debug)]
pub(crate) struct Client {
    address: SocketAddr,
    connection: Connection,
    timeout: Duration,
}

impl Client {
    pub(crate) async fn connect(address: SocketAddr, timeout: Duration) -> Result<Self, Error> {
        let connection = Connection::open(address)
            .await
            .map_err(|detail| Error::Connect { address, detail })?;
        Ok(Self {
            address,
            connection,
            timeout,
        })
    }

    /// POSTs a JSON body with `api_key`; the status and body.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        api_key: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), Error> {
        if !self.connection.usable() {
            self.connection =
                Connection::open(self.address)
                    .await
                    .map_err(|detail| Error::Connect {
                        address: self.address,
                        detail,
                    })?;
        }
        let request =
            Template::new(self.address, path, Some(api_key), BodyFormat::Json)?.request(body);
        self.connection
            .exchange(request, self.timeout)
            .await
            .map_err(|error| Error::Http(format!("POST {path}: {}", error.code())))
    }
}
