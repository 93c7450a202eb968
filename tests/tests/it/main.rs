//! cyberid's integration tests, one binary with a module per subject.

mod annex_a;
mod authlog;
mod cluster;
mod crash;
mod disclosure;
mod enrollment;
mod full_disk;
mod holder_vectors;
mod loadtest;
mod openapi;
mod openssl_interop;
mod protocol_vectors;
mod server;
mod server_process;
mod sm2_differential;
mod subjects;
