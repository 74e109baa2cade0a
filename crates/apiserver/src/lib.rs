//! The Kubernetes API server of kubelab: kube-apiserver's REST semantics for the resources a
//! networking course uses, over the `store` crate, driven unchanged by kubectl, kube-rs and the
//! Python client. See ARCHITECTURE.md for the map.

pub mod alloc;
pub mod bootstrap;
pub mod custom;
pub mod discovery;
pub mod exec;
pub mod gc;
pub mod hooks;
pub mod kubeconfig;
pub mod logs;
pub mod object;
pub mod openapi;
pub mod pki;
pub mod policy;
pub mod registry;
pub mod request;
pub mod rest;
pub mod server;
pub mod services;
pub mod tables;
pub mod tokens;
pub mod watch;

pub use server::{ApiServer, Config, KUBERNETES_VERSION, LocalTransport, ServerError, State};
