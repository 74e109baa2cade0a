//! Kubernetes API machinery that needs no I/O: the Status error form, field errors, and (in
//! their own modules) validation, defaulting and selectors. Everything here is a pure function of
//! its input; the HTTP layer lives in `apiserver`.

pub mod errors;

pub use errors::{ApiError, FieldError, FieldErrorKind};
pub mod defaults;
pub mod gosyntax;
pub mod names;
pub mod selectors;
pub mod validation;

mod access;
