//! A minimal HTTP/1.1 client for the API: the demo's, and the tests'.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::Error;

/// One keep-alive HTTP/1.1 connection to a node.
#[derive(Debug)]
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    base: String,
    headers: hyper::HeaderMap,
}

impl Client {
    /// Connects to `address`.
    pub async fn connect(address: SocketAddr) -> Result<Self, Error> {
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(Error::io(format!("connect to {address}")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| Error::Http(format!("HTTP handshake: {error}")))?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            base: format!("http://{address}"),
            headers: hyper::HeaderMap::new(),
        })
    }

    /// The headers of the last response.
    pub fn last_headers(&self) -> &hyper::HeaderMap {
        &self.headers
    }

    /// Sends a request, with a JSON body if given; the status and the body (JSON, or the text
    /// as a JSON string when it is not JSON).
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        api_key: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), Error> {
        let authorization = api_key.map(|api_key| format!("Bearer {api_key}"));
        let mut headers = Vec::new();
        if let Some(authorization) = &authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        let body = match body {
            Some(body) => {
                headers.push(("content-type", "application/json"));
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        self.send(method, path, &headers, body).await
    }

    /// Sends a request with exactly these headers (besides `host`) and body bytes; the status
    /// and the body, as [`call`](Self::call) reads it.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(StatusCode, Value), Error> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("host", "cyberid-demo");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body.into()))
            .map_err(|error| Error::Http(format!("build request: {error}")))?;
        // The connection takes the next request only once it has finished the last one.
        self.sender
            .ready()
            .await
            .map_err(|error| Error::Http(format!("HTTP connection: {error}")))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| Error::Http(format!("HTTP request to {path}: {error}")))?;
        let status = response.status();
        self.headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| Error::Http(format!("HTTP response from {path}: {error}")))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }
}
