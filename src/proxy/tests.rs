//! In-process tests of the request path: wharf's own server and proxy on
//! `127.0.0.1:0`, tiny backends the tests control on their own listeners,
//! and real clients, all over real sockets in the test's runtime. No Docker,
//! no wharf binary; each test builds what it needs and everything closes
//! when it ends.
//!
//! Helpers: [`fixture`] (wharf in-process, publishing desired states),
//! [`backends`] and [`raw`] (well- and ill-behaved upstreams), [`client`] (requests,
//! raw sockets, polling with a deadline). The tests, by subject:
//! `retries`, `cold`, `in_flight`, `pooling`, `rewrite`, `protocols`, `lifecycle`,
//! `raw_client`.

mod backends;
mod body_bytes;
mod client;
mod fixture;
mod https;
mod raw;
mod raw_client;

mod cold;
mod connect;
mod hostile;
mod in_flight;
mod lifecycle;
mod pooling;
mod protocols;
mod retries;
mod rewrite;
